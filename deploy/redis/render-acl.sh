#!/bin/sh
# Render the ACL template: every @NAME@ becomes "#<sha256 of $NAME>" (Redis's hashed
# password form), so the rendered file never holds a plaintext password.
# Redis refuses comments in an ACL file, so comment and blank lines are dropped.
# Usage: render-acl.sh TEMPLATE OUTPUT. Fails, naming the variable, if one is unset.
set -eu
template=$1
output=$2
tmp="$output.tmp.$$"
grep -v -e '^#' -e '^[[:space:]]*$' "$template" > "$tmp"
for name in $(grep -o '@[A-Z0-9_]*@' "$template" | tr -d '@' | sort -u); do
  value=$(printenv "$name" || true)
  if [ -z "$value" ]; then
    rm -f "$tmp"
    echo "render-acl: $name is not set (a password for the Redis ACL file)" >&2
    exit 2
  fi
  hash=$(printf '%s' "$value" | sha256sum | cut -d' ' -f1)
  sed -i "s/@$name@/#$hash/g" "$tmp"
done
chmod 600 "$tmp"
mv "$tmp" "$output"
