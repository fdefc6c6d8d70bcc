#!/usr/bin/env bash
# Copyright (c) mtd.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Test helper, run on a lab host: build the rebase test images with `docker build --network none` from
# busybox-based Dockerfiles and push them to the lab registry. Usage: build.sh REGISTRY NAMESPACE
set -euo pipefail
REG=$1 NS=$2
DOCKER=${DOCKER:-docker}
CTX=$(mktemp -d /tmp/it-rb-build.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
cd "$CTX"
mkdir base1 base2 app
echo v1 >base1/base-release
printf 'FROM %s/mtd/busybox:latest\nCOPY base-release /etc/base-release\n' "$REG" >base1/Dockerfile
echo v2 >base2/base-release
echo "only in base v2" >base2/base-v2-only
printf 'FROM %s/mtd/busybox:latest\nCOPY base-release /etc/base-release\nCOPY base-v2-only /etc/base-v2-only\n' \
  "$REG" >base2/Dockerfile
echo "app file one" >app/one
echo "app file two" >app/two
echo "app2 file three" >app/three
echo "arm64 variant" >app/arch
cat >app/Dockerfile.app <<DF
FROM $REG/$NS/base:v1
COPY one /app/one
COPY two /app/two
ENV APP_MODE=rebased-test
CMD ["cat", "/etc/base-release", "/app/one", "/app/two"]
DF
cat >app/Dockerfile.app2 <<DF
FROM $REG/$NS/base:v1
COPY one /app/one
COPY three /app/three
DF
cat >app/Dockerfile.arm <<DF
FROM $REG/$NS/base:v1
COPY one /app/one
COPY arch /app/arch
DF
build() { # tag dir [dockerfile]
  "$DOCKER" build -q --network none -t "$REG/$NS/$1" ${3:+-f "$2/$3"} "$2" >/dev/null
  "$DOCKER" push -q "$REG/$NS/$1" >/dev/null
}
build base:v1 base1
build base:v2 base2
build app:1 app Dockerfile.app
build app2:1 app Dockerfile.app2
build app-arm:1 app Dockerfile.arm
"$DOCKER" rmi -f "$REG/$NS/base:v1" "$REG/$NS/base:v2" "$REG/$NS/app:1" "$REG/$NS/app2:1" "$REG/$NS/app-arm:1" \
  >/dev/null
echo built
