"""A TCP relay that stands for one edge's network link, so the demo can cut it for real.

While cut, open connections are reset and new ones are closed at once: the edge sees exactly
what a dead uplink looks like (connection errors, no answers), not a simulated flag.
``delay_s`` slows it instead: every chunk relayed either way waits that long (a slow uplink).
``latency_s`` adds propagation delay instead: every chunk arrives that much later, chunks in
flight together (a long link, as ``tc netem delay`` makes one: a message of several chunks is
late once, not once per chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class NetLink:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.up = True
        self.delay_s = 0.0  # added to every relayed chunk, each direction
        self.latency_s = 0.0  # propagation delay each direction, chunks pipelined
        self.port = 0

    def start(self) -> int:
        """Start listening on a free loopback port; returns it."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        self.up = False
        asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop).result()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
        if not self._thread.is_alive():
            self._loop.close()  # frees its selector and self-pipe sockets

    async def _shutdown(self) -> None:
        """Stop listening, drop every connection and let the relay tasks finish."""
        assert self._server is not None
        self._server.close()
        await self._reset_all()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.latency_s > 0:
            await self._pipe_late(reader, writer)
            return
        try:
            while data := await reader.read(65536):
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                if not self.up:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort() if not self.up else writer.close()

    async def _pipe_late(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay each chunk ``latency_s`` after it was read, in order, without serialising."""
        loop = asyncio.get_running_loop()
        late: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def release() -> None:
            while (item := await late.get()) is not None:
                when, data = item
                if (wait := when - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not self.up:
                    return
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(release())
        try:
            while data := await reader.read(65536):
                if not self.up:
                    break
                late.put_nowait((loop.time() + self.latency_s, data))
        except (ConnectionError, OSError):
            pass
        finally:
            late.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
            with contextlib.suppress(Exception):
                writer.transport.abort() if not self.up else writer.close()
