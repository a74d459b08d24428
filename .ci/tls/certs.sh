#!/usr/bin/env bash
# Generates throw-away TLS material for the TLS test servers (.ci/tls/start.sh) into DIR:
#
#   ca.pem, ca.key                 the test CA (trusted by the servers and the tests)
#   server.pem, server.key         CN=localhost, SAN DNS:localhost, IP:127.0.0.1 (signed by ca;
#                                  serverAuth and clientAuth: Redis Cluster nodes present it to
#                                  each other). 127.0.0.2 is deliberately NOT covered.
#   client.pem, client.key         CN=sched-client (signed by ca; clientAuth)
#   client-cert-user.pem/.key      CN=sched_cert: the Postgres user that logs in by certificate
#   other-ca.pem, other-ca.key     an unrelated CA (for "unknown CA" tests)
#   other-client.pem/.key          CN=sched_cert, signed by other-ca (a certificate the servers reject)
#
# ECDSA P-256 keys (quick to make), mode 0600. Nothing is reused between runs: a fresh CA each time.
#
#   .ci/tls/certs.sh /tmp/sched-tls
set -euo pipefail

DIR=${1:?usage: certs.sh DIR}
mkdir -p "$DIR"
cd "$DIR"
umask 077

ca() { # name subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 2 -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # name ca cn extendedKeyUsage [subjectAltName]
  local name=$1 signer=$2 cn=$3 eku=$4 san=${5:-}
  local ext; ext="$(mktemp "$DIR/ext.XXXXXX")"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=$cn" \
    -keyout "$name.key" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA "$signer.pem" -CAkey "$signer.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

ca ca "sched test CA"
ca other-ca "sched unrelated CA"
leaf server ca localhost serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
leaf client ca sched-client clientAuth
leaf client-cert-user ca sched_cert clientAuth
leaf other-client other-ca sched_cert clientAuth
rm -f ./*.srl
chmod 600 ./*.key
chmod 644 ./*.pem
echo "tls material in $DIR"
