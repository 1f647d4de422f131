"""PyTrickle against our trickle server (driven by tests/pytrickle.rs).

Usage: pytrickle_client.py <python-publishes-url> <rust-published-url> <segments-py> <segments-rust>

1. PyTrickle's TrickleSubscriber (start 0) follows <python-publishes-url> while its
   TricklePublisher publishes <segments-py> segments there, each in several chunks; every
   segment read must equal the one written. (The Rust test reads the same channel too.)
2. A TrickleSubscriber (start 0) reads the <segments-rust> segments the Rust HttpPublisher put
   on <rust-published-url>, then prints RUST-READ and waits for the end of the stream, which
   the Rust side causes by deleting that channel.

Progress goes to stdout, one line per event; the exit status is 0 on success.

PyTrickle's package __init__ imports torch and av, which this test does not need (and the venv
does not have), so the package is registered as a bare module whose __path__ points at the
installed files, and only its publisher/subscriber submodules are imported.
"""

import asyncio
import importlib.util
import logging
import os
import sys
import types


def import_pytrickle():
    spec = importlib.util.find_spec("pytrickle")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pytrickle is not installed in this interpreter")
    package = types.ModuleType("pytrickle")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["pytrickle"] = package
    import pytrickle.publisher as publisher
    import pytrickle.subscriber as subscriber

    return publisher.TricklePublisher, subscriber.TrickleSubscriber


TricklePublisher, TrickleSubscriber = import_pytrickle()


def segment_bytes(i: int) -> bytes:
    """Segment i as three chunks, the same function as the Rust side's."""
    return b"".join(chunk(i, part) for part in range(3))


def chunk(i: int, part: int) -> bytes:
    return (f"py-segment-{i}-part-{part}|".encode()) * (100 + 50 * part)


def rust_segment(i: int) -> bytes:
    return (f"rust-segment-{i}|".encode()) * 200


def say(line: str) -> None:
    print(line, flush=True)


async def read_segment(segment) -> bytes:
    data = b""
    while True:
        part = await segment.read()
        if not part:
            break
        data += part
    await segment.close()
    return data


async def follow_python_channel(url: str, count: int) -> None:
    subscriber = TrickleSubscriber(url, start_seq=0)
    try:
        for i in range(count):
            segment = await subscriber.next()
            if segment is None:
                raise AssertionError(f"python subscriber ended before segment {i}")
            data = await read_segment(segment)
            if segment.seq() != i or data != segment_bytes(i):
                raise AssertionError(f"segment {i}: seq {segment.seq()}, {len(data)} bytes differ")
            say(f"PY-READ {i} {len(data)}")
    finally:
        await subscriber.close()


async def publish_python_channel(url: str, count: int) -> None:
    publisher = TricklePublisher(url, "video/mp2t")
    await publisher.start()
    try:
        for i in range(count):
            writer = await publisher.next()
            for part in range(3):
                await writer.write(chunk(i, part))
                await asyncio.sleep(0.02)
            await writer.close()
            say(f"PY-WROTE {i}")
            await asyncio.sleep(0.05)
        # Let the last POST complete before close() cancels the background tasks.
        await asyncio.sleep(0.3)
        if publisher.error_event.is_set():
            raise AssertionError(f"publisher error: {publisher.last_error}")
    finally:
        await publisher.close()


async def read_rust_channel(url: str, count: int) -> None:
    subscriber = TrickleSubscriber(url, start_seq=0)
    try:
        for i in range(count):
            segment = await subscriber.next()
            if segment is None:
                raise AssertionError(f"rust channel ended before segment {i}")
            data = await read_segment(segment)
            if segment.seq() != i or data != rust_segment(i):
                raise AssertionError(f"rust segment {i}: seq {segment.seq()}, {len(data)} bytes differ")
            say(f"RUST-SEGMENT {i} {len(data)}")
        say("RUST-READ")
        # The Rust side deletes the channel now: the pending GET must end the stream.
        end = await asyncio.wait_for(subscriber.next(), timeout=20)
        if end is not None:
            raise AssertionError(f"expected the end of the stream, got segment {end.seq()}")
        say("RUST-EOS")
    finally:
        await subscriber.close()


async def main() -> None:
    py_url, rust_url, py_count, rust_count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    logging.basicConfig(level=os.environ.get("PYTRICKLE_LOG", "WARNING"), stream=sys.stderr)
    reader = asyncio.create_task(follow_python_channel(py_url, py_count))
    await asyncio.sleep(0.1)
    await publish_python_channel(py_url, py_count)
    await asyncio.wait_for(reader, timeout=30)
    await asyncio.wait_for(read_rust_channel(rust_url, rust_count), timeout=60)
    say("OK")


if __name__ == "__main__":
    asyncio.run(main())
