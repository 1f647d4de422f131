#!/usr/bin/env python3
"""Sequential client of `run.sh` over one keep-alive connection: `warm` requests, then (when
`pid` is not 0) callgrind's counters zeroed, `n` requests and a dump. A route's request is
bench's: an LLM request, or a text-to-image job and the GET of its image.

usage: drive.py <port> <llm|t2i> <warm> <n> <gateway pid or 0> [--wait]"""
import http.client, json, subprocess, sys, time

port, route, warm, n, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
LLM = json.dumps({"model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "max_tokens": 16,
                  "messages": [{"role": "user", "content": "benchmark this please"}]})
T2I = json.dumps({"prompt": "a lighthouse", "model_id": "stabilityai/sd-turbo", "width": 64,
                  "height": 64, "num_images_per_prompt": 1})
H = {"Content-Type": "application/json"}
if "--wait" in sys.argv:
    # Until the gateway answers a job (up to 2 minutes: it starts slowly under callgrind).
    for _ in range(240):
        try:
            w = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            w.request("POST", "/llm", LLM, H)
            if w.getresponse().status == 200:
                sys.exit(0)
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("the gateway never answered")
c = http.client.HTTPConnection("127.0.0.1", port)

def one():
    if route == "llm":
        c.request("POST", "/llm", LLM, H)
        r = c.getresponse(); b = r.read()
        assert r.status == 200, (r.status, b)
    else:
        c.request("POST", "/text-to-image", T2I, H)
        r = c.getresponse(); b = r.read()
        assert r.status == 200, (r.status, b)
        url = json.loads(b)["images"][0]["url"]
        if url.startswith("http"):
            url = "/" + url.split("/", 3)[3]
        c.request("GET", url)
        r = c.getresponse(); img = r.read()
        assert r.status == 200 and len(img) > 0, (r.status, url)

for _ in range(warm):
    one()
if pid != "0":
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    one()
if pid != "0":
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
print("done", route, n)
