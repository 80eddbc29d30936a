#!/usr/bin/env bash
# Development secrets for deploy/compose: a dev CA, broker and admin certificates, SCRAM
# passwords for every principal of the ACL plan, and the Grafana admin password.
#
#   deploy/scripts/make-certs.sh [DIR]      (DIR defaults to deploy/compose/secrets)
#
# Layout written (mounted read-only into the containers at /secrets; keep it out of git):
#   DIR/certs/ca.crt ca.key                     the dev CA (ca.key never leaves the host)
#   DIR/certs/kafka-{1,2,3}.pem                 broker key (PKCS#8) + certificate chain
#   DIR/certs/sgx-admin.pem                     the admin client (topics, users, ACLs)
#   DIR/admin.properties                        Kafka CLI client config of the admin
#   DIR/sasl/<principal>.password               SCRAM-SHA-512 password (kafka-setup job)
#   DIR/sasl/<principal>.env                    SGX_KAFKA_SASL_USERNAME/PASSWORD for a service
#   DIR/grafana-admin.password
# Existing files are kept: delete DIR to start over. For production use your own PKI
# and a secret store; this CA is for a development or test installation only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/../compose/secrets"}
days=${SGX_CERT_DAYS:-365}
mkdir -p "$dir/certs" "$dir/sasl"
chmod 0700 "$dir"
umask 077

key() { [ -s "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

if [ ! -s "$dir/certs/ca.crt" ]; then
  key "$dir/certs/ca.key"
  openssl req -x509 -new -key "$dir/certs/ca.key" -sha256 -days "$days" \
    -subj "/CN=sgx-dev-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/certs/ca.crt"
fi

# leaf NAME EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES] -> certs/NAME.pem (key + cert + CA)
leaf() {
  local name=$1 usage=$2 san=${3:-} work
  [ -s "$dir/certs/$name.pem" ] && return 0
  work=$(mktemp -d)
  key "$work/key.pem"
  openssl req -new -key "$work/key.pem" -subj "/CN=$name" -out "$work/req.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } > "$work/ext.cnf"
  openssl x509 -req -in "$work/req.csr" -CA "$dir/certs/ca.crt" -CAkey "$dir/certs/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$work/ext.cnf" -out "$work/cert.pem" 2>/dev/null
  cat "$work/key.pem" "$work/cert.pem" "$dir/certs/ca.crt" > "$dir/certs/$name.pem"
  rm -rf "$work"
}

for n in 1 2 3; do
  # brokers are servers (clients, other brokers) and clients (to the controllers)
  leaf "kafka-$n" serverAuth,clientAuth "DNS:kafka-$n,DNS:localhost"
done
leaf sgx-admin clientAuth

cat > "$dir/admin.properties" <<PROPS
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=/secrets/certs/sgx-admin.pem
ssl.truststore.type=PEM
ssl.truststore.location=/secrets/certs/ca.crt
PROPS

# one SCRAM principal per `user` line of the generated topic/ACL script
for principal in $(awk '$1 == "user" { print $2 }' "$here/create-topics-and-acls.sh"); do
  password_file="$dir/sasl/$principal.password"
  [ -s "$password_file" ] || openssl rand -hex 24 > "$password_file"
  printf 'SGX_KAFKA_SASL_USERNAME=%s\nSGX_KAFKA_SASL_PASSWORD=%s\n' \
    "$principal" "$(cat "$password_file")" > "$dir/sasl/$principal.env"
done
[ -s "$dir/grafana-admin.password" ] || openssl rand -hex 16 > "$dir/grafana-admin.password"

# the containers run as uid 1000 (kafka) and 10001 (sgx): let them read, nobody else write
chmod -R a+rX,go-w "$dir" && chmod 0600 "$dir/certs/ca.key"
echo "secrets in $dir"
