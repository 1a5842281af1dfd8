"""Run the extension once under the tester with the properties given as JSON in
argv[1], in a process of its own, and report on stdout how the run ended.

Used by test_it_bad_input.py for property values the manifest schema rejects:
the runtime treats a schema failure at configure time as fatal for the process
(contract sections 2.4 and 10.4: the native runtime exits; the pure-Python
stand-in aborts `run()` with an exception), so such a run cannot share the
test process. Exit status 0 and "RUN RETURNED" mean the run completed.
"""

from __future__ import annotations

import json
import sys

from ten_runtime import AsyncExtensionTester, AsyncTenEnvTester, Data

ADDON = "xai_asr_python"


class Probe(AsyncExtensionTester):
    """Stops at the extension's first data message (it then has been configured,
    initialised and started: with nothing listening at the URL it reports its
    connection status at once). Stopping any earlier could end the run before
    the extension's configure step, where the schema check happens."""

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        text, _ = data.get_property_to_json(None)
        print(f"DATA {data.get_name()} {text}", flush=True)
        ten_env.stop_test()


def main() -> int:
    properties = json.loads(sys.argv[1])
    tester = Probe()
    tester.set_test_mode_single(ADDON, json.dumps(properties))
    tester.set_timeout(20_000_000)
    err = tester.run()
    print(f"RUN RETURNED {None if err is None else err.error_message()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
