#!/usr/bin/env python3
"""Sends N GET requests over one keep-alive connection to the collector's API, cycling through
the paths given, and prints how many succeeded and the request rate. Used to measure whether
serving the metrics API slows a replay (see README: figures).

    scripts/api_load.py 127.0.0.1:8082 10000 /apis/metrics.k8s.io/v1beta1/nodes /metrics
"""
import http.client
import sys
import time


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host, count, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    conn = http.client.HTTPConnection(host, timeout=10)
    ok = failed = 0
    started = time.monotonic()
    for i in range(count):
        try:
            conn.request("GET", paths[i % len(paths)])
            response = conn.getresponse()
            response.read()
            if 200 <= response.status < 300:
                ok += 1
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = http.client.HTTPConnection(host, timeout=10)
    elapsed = time.monotonic() - started
    print(f"{ok} ok, {failed} failed, {count / elapsed:.0f} requests/s over {elapsed:.1f}s")


if __name__ == "__main__":
    main()
