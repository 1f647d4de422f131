"""PyTrickle as a live-video client of the gateway (driven by tests/it/live.rs).

Usage: pytrickle_live.py <publish_url> <subscribe_url> <out_dir> <segment.ts>...

PyTrickle's TricklePublisher publishes each MPEG-TS file as one segment into the gateway's
input channel (in chunks, paced like a live source), while its TrickleSubscriber reads the
processed segments from the gateway's output channel and writes them to out_dir/out<i>.ts.
Prints OK and exits 0 once every segment came back.

PyTrickle's package __init__ imports torch and av, which are not installed: the package is
registered as a bare module whose __path__ points at the installed files, and only its
publisher and subscriber modules are imported.
"""

import asyncio
import importlib.util
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


async def read_all(url: str, count: int, out_dir: str) -> None:
    subscriber = TrickleSubscriber(url, start_seq=0)
    try:
        got = 0
        while got < count:
            segment = await subscriber.next()
            if segment is None:
                raise AssertionError(f"output ended after {got} segments")
            data = b""
            while True:
                part = await segment.read()
                if not part:
                    break
                data += part
            await segment.close()
            if not data:
                continue
            with open(os.path.join(out_dir, f"out{got}.ts"), "wb") as f:
                f.write(data)
            print(f"READ {got} {len(data)}", flush=True)
            got += 1
    finally:
        await subscriber.close()


async def publish_all(url: str, files: list) -> None:
    publisher = TricklePublisher(url, "video/mp2t")
    await publisher.start()
    try:
        for i, path in enumerate(files):
            with open(path, "rb") as f:
                data = f.read()
            writer = await publisher.next()
            step = max(1, len(data) // 4)
            for start in range(0, len(data), step):
                await writer.write(data[start:start + step])
                await asyncio.sleep(0.1)
            await writer.close()
            print(f"WROTE {i} {len(data)}", flush=True)
        await asyncio.sleep(0.3)
        if publisher.error_event.is_set():
            raise AssertionError(f"publisher error: {publisher.last_error}")
    finally:
        await publisher.close()


async def main() -> None:
    publish_url, subscribe_url, out_dir, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    reader = asyncio.create_task(read_all(subscribe_url, len(files), out_dir))
    await asyncio.sleep(0.1)
    await publish_all(publish_url, files)
    await asyncio.wait_for(reader, timeout=30)
    print("OK", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
