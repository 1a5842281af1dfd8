"""The xai_asr_python TEN extension (skeleton: the ASR behaviour lands with the session engine)."""

from __future__ import annotations

from ten_runtime import AsyncExtension, AsyncTenEnv, Cmd, CmdResult, StatusCode


class XAIASRExtension(AsyncExtension):
    async def on_cmd(self, ten_env: AsyncTenEnv, cmd: Cmd) -> None:
        # Every cmd gets exactly one final result, so a sender never waits for
        # its path timeout.
        await ten_env.return_result(CmdResult.create(StatusCode.OK, cmd))
