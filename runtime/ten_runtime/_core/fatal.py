"""Errors for conditions on which the native runtime ends the process (§2.4).

The stand-in does not kill the process: it tears the run down and raises one
of these from the blocking call (``tester.run()``, ``App.run()``,
``GraphRunner.start()/wait()``), so a pytest run fails visibly, with the
original traceback in the message, instead of hanging or continuing.
"""

from __future__ import annotations


class FatalRuntimeError(RuntimeError):
    """The native runtime would have called ``exit``/``os._exit`` here."""


class GraphStartError(FatalRuntimeError):
    """A graph could not start: bad graph, unknown addon, missing env var, schema failure."""
