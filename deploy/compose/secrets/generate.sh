#!/usr/bin/env bash
# Writes the compose stack's secrets, random values, into this directory (or
# the directory given as the first argument): the files compose.yaml's
# `secrets:` section names. A file that exists is kept, so running it again
# changes nothing; values derived from one password (the PostgreSQL password
# in database_url and pgbouncer_userlist.txt, the Redis password in
# redis_url and redis_users.acl) are taken from the files already there.
#
#   deploy/compose/secrets/generate.sh
set -euo pipefail

dir=${1:-$(cd "$(dirname "$0")" && pwd)}
umask 077
mkdir -p "$dir"
# The directory keeps other users of the host out. The files themselves are
# world-readable, because compose bind-mounts them as they are into
# containers whose services run as their own users (switchyard 10001,
# postgres 999, pgbouncer 70, redis 999).
chmod 0700 "$dir"

random_hex() {
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

write() {
  local file="$dir/$1"
  if [ -e "$file" ]; then
    echo "kept    $file"
    return
  fi
  printf '%s\n' "$2" >"$file"
  chmod 0644 "$file"
  echo "created $file"
}

# What the sed expression prints from a file already there, if anything:
# `from FILE EXPRESSION`.
from() {
  if [ -e "$dir/$1" ]; then
    sed -n "$2" "$dir/$1" | head -n 1
  fi
}

pg_password=$(from postgres_password 's/^\([0-9a-f]\{16,\}\)$/\1/p')
[ -n "$pg_password" ] || pg_password=$(from pgbouncer_userlist.txt 's/^"switchyard" "\([0-9a-f]\{16,\}\)"$/\1/p')
[ -n "$pg_password" ] || pg_password=$(from database_url 's/^postgres:\/\/switchyard:\([0-9a-f]\{16,\}\)@.*$/\1/p')
[ -n "$pg_password" ] || pg_password=$(random_hex 24)

redis_password=$(from redis_url 's/^redis:\/\/switchyard:\([0-9a-f]\{16,\}\)@.*$/\1/p')
[ -n "$redis_password" ] || redis_password=$(from redis_users.acl 's/^user switchyard on >\([0-9a-f]\{16,\}\) .*$/\1/p')
[ -n "$redis_password" ] || redis_password=$(random_hex 24)

write postgres_password "$pg_password"
write pgbouncer_userlist.txt "\"switchyard\" \"$pg_password\""
write database_url "postgres://switchyard:$pg_password@pgbouncer:6432/switchyard"
# PostgreSQL itself, not pgbouncer: for pg_dump and pg_restore (`switchyard
# backup`, docs/backup.md), which need a session of their own.
write database_url_direct "postgres://switchyard:$pg_password@postgres.internal:5432/switchyard"
write redis_users.acl "user default on nopass -@all +ping
user switchyard on >$redis_password ~* &* +@all"
write redis_url "redis://switchyard:$redis_password@redis:6379/0"
write jwt_secret "$(random_hex 32)"
write admin_api_key "sy_$(random_hex 32)"

# nginx's certificate: a self-signed one for localhost, unless a pair is
# there already (put your own fullchain.pem and key there under these names).
if [ -e "$dir/tls_fullchain.pem" ] && [ -e "$dir/tls_privkey.pem" ]; then
  echo "kept    $dir/tls_fullchain.pem, $dir/tls_privkey.pem"
else
  if ! command -v openssl >/dev/null 2>&1; then
    echo "openssl is needed for the self-signed certificate (Debian: apt-get install openssl)," >&2
    echo "or put your own tls_fullchain.pem and tls_privkey.pem into $dir" >&2
    exit 1
  fi
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 825 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/tls_privkey.pem" -out "$dir/tls_fullchain.pem" 2>/dev/null
  chmod 0644 "$dir/tls_privkey.pem" "$dir/tls_fullchain.pem"
  echo "created $dir/tls_fullchain.pem, $dir/tls_privkey.pem (self-signed, CN=localhost)"
fi
