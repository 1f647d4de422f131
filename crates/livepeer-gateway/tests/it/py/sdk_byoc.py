"""Submits one paid BYOC job with the official Python SDK (livepeer-gateway 1.0.0).

Usage: sdk_byoc.py ORCH_URL SIGNER_URL API_KEY CAPABILITY TEXT

`livepeer_gateway.byoc.submit_byoc_job` signs the job with `SIGNER_URL/sign-byoc-job`, fetches
the orchestrator's info over gRPC on port 8935 of ORCH_URL's host, has `SIGNER_URL` pay for it
(`/generate-live-payment`), and posts `{"text": TEXT}` to `ORCH_URL/process/request/CAPABILITY`.
Prints the answer as one JSON line on stdout: {"status", "data", "balance", "orchestrator_url"}.
Any failure raises, so the process exits non-zero with the SDK's traceback and logs on stderr.
"""

import importlib.util
import json
import logging
import sys
import types


def load_sdk_without_media():
    """Imports `livepeer_gateway` as a bare package, without running its __init__.

    The package's __init__ imports its media modules, which need PyAV; scripts/sdk-venv does not
    install it because BYOC never uses it. The BYOC module and what it imports (orchestrator,
    discovery, http, remote_signer, orch_info: aiohttp, grpcio, protobuf) load as they are.
    """
    spec = importlib.util.find_spec("livepeer_gateway")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("livepeer_gateway is not installed (run scripts/sdk-venv)")
    package = types.ModuleType("livepeer_gateway")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["livepeer_gateway"] = package


def main() -> None:
    orch_url, signer_url, api_key, capability, text = sys.argv[1:6]
    # The SDK logs signing and payment failures as warnings and carries on unsigned or unpaid;
    # shown on stderr, they explain the orchestrator's refusal that follows.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    load_sdk_without_media()
    from livepeer_gateway.byoc import ByocJobRequest, submit_byoc_job

    result = submit_byoc_job(
        ByocJobRequest(capability=capability, payload={"text": text}, timeout_seconds=30),
        orch_url=orch_url,
        signer_url=signer_url,
        signer_headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    data = result.data
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    print(
        json.dumps(
            {
                "status": result.status_code,
                "data": data,
                "balance": result.balance,
                "orchestrator_url": result.orchestrator_url,
            }
        )
    )


if __name__ == "__main__":
    main()
