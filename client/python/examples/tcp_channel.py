"""Calls that carry on across calcd restarts: python examples/tcp_channel.py [TARGET] [SECONDS]

TARGET is HOST:PORT, HOST:PORT,HOST:PORT or dns:///HOST:PORT (default 127.0.0.1:4000). For SECONDS (default 10)
it makes one call every 100 ms and prints each change of the channel's state; kill and restart calcd meanwhile.
"""
import asyncio
import sys

from calc_client import Backoff, CalcError, TcpChannel
from calc_client.pb import CalculateRequest, OPERATOR_ADD

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4000"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0


async def main() -> None:
    # retry_idempotent: calc's methods are pure, so a call lost with its connection may be made again;
    # wait_for_ready: while no server is up, calls wait (up to their timeout) instead of failing at once.
    async with TcpChannel(target, retry_idempotent=True, wait_for_ready=True,
                          backoff=Backoff(base_delay=0.1, max_delay=1.0)) as ch:

        async def watch() -> None:
            state = ch.state
            print("state:", state.name)
            while True:
                await ch.wait_for_state_change(state)
                state = ch.state
                print("state:", state.name, {a: s.name for a, s in ch.endpoints.items()})

        watcher = asyncio.create_task(watch())
        ok = failed = 0
        for i in range(int(seconds * 10)):
            try:
                await ch.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=i, rhs=1), timeout=10)
                ok += 1
            except CalcError as err:
                failed += 1
                print("call failed:", err.code.name, err.message)
            await asyncio.sleep(0.1)
        watcher.cancel()
        print(f"{ok} calls succeeded, {failed} failed")


asyncio.run(main())
