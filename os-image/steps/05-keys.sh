#!/usr/bin/env bash
# Step 0: signing keys. Production keys come from outside (SB_KEY/SB_CERT for secure boot,
# BUNDLE_KEY/BUNDLE_CERT for update bundles; a PKCS#11 URI works with sbsign --engine later) and
# are never committed. Without them, fresh TEST keys are generated here, once per build folder:
# a PK/KEK/db chain for OVMF, a db key that signs sd-boot and the UKIs, a bundle key, and a
# "foreign" db key and bundle key the tests use to show a wrongly signed UKI or bundle is refused.
# Output: OUT/keys/*.{key,crt}, OUT/keys/owner.guid
source "$(dirname "$0")/common.sh"
need openssl
K=$OUT/keys
mkdir -p "$K"; chmod 700 "$K"
gen() { # name CN [ec]
    [ -s "$K/$1.crt" ] && return 0
    if [ "${3:-}" = ec ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=$2/" -keyout "$K/$1.key" -out "$K/$1.crt" 2>/dev/null
    else
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=$2/" -keyout "$K/$1.key" -out "$K/$1.crt" 2>/dev/null
    fi
}
gen PK "DoseGate TEST Platform Key"
gen KEK "DoseGate TEST Key Exchange Key"
gen db "DoseGate TEST Signature Database Key"
gen foreign-db "Not DoseGate: foreign signing key"
gen bundle "DoseGate TEST update bundle key" ec
gen foreign-bundle "Not DoseGate: foreign bundle key" ec
[ -s "$K/owner.guid" ] || cat /proc/sys/kernel/random/uuid > "$K/owner.guid"
if [ -n "${SB_KEY:-}" ]; then cp "$SB_KEY" "$K/db.key"; cp "${SB_CERT:?SB_CERT with SB_KEY}" "$K/db.crt"; fi
if [ -n "${BUNDLE_KEY:-}" ]; then cp "$BUNDLE_KEY" "$K/bundle.key"; cp "${BUNDLE_CERT:?BUNDLE_CERT with BUNDLE_KEY}" "$K/bundle.crt"; fi
# Public halves as `dosegate update --key` reads them (PEM SubjectPublicKeyInfo).
for k in bundle foreign-bundle; do openssl x509 -in "$K/$k.crt" -pubkey -noout > "$K/$k.pub.pem"; done
log "keys: $(ls "$K" | tr '\n' ' ')"
