#!/usr/bin/env bash
# Create a SoftHSM2 token with a given label, once. Standalone and idempotent;
# tests use it to make throw-away tokens in temp folders.
#
# Env:
#   SOFTHSM2_CONF           (required) config file; written from the template if missing
#   SIGNER_HSM_TOKEN_DIR    token dir for a new config (default: <conf dir>/tokens)
#   SIGNER_HSM_TOKEN        token label (default: signer, at most 32 bytes)
#   SIGNER_HSM_PIN    | SIGNER_HSM_PIN_FILE      user PIN, or a file holding it
#   SIGNER_HSM_SO_PIN | SIGNER_HSM_SO_PIN_FILE   SO PIN, or a file holding it
# Prints one line: created / already present. Never prints PINs.
# Exit 2 on bad input, including anything pointing at the system SoftHSM.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
refuse() { printf 'init-token: %s\n' "$*" >&2; exit 2; }

[[ -n "${SOFTHSM2_CONF:-}" ]] || refuse "SOFTHSM2_CONF must be set (path of the config to use/write)"
conf=$(realpath -m -- "$SOFTHSM2_CONF")
export SOFTHSM2_CONF=$conf
# The system config/tokens belong to the OS package and other users.
case "$conf" in /etc/*) refuse "SOFTHSM2_CONF=$conf is under /etc; use a private config" ;; esac

label=${SIGNER_HSM_TOKEN:-signer}
[[ -n "$label" ]] || refuse "SIGNER_HSM_TOKEN must not be empty"
# PKCS#11 labels are 32 bytes, space padded: longer ones would be truncated
# and trailing spaces could never be matched again.
(( $(LC_ALL=C; echo "${#label}") <= 32 )) || refuse "token label longer than 32 bytes: $label"
[[ "$label" == "${label%[[:space:]]}" ]] || refuse "token label must not end in whitespace"

# PIN from VAR, else from the file named by VAR_FILE.
read_pin() {
    local var=$1 filevar="${1}_FILE"
    if [[ -n "${!var:-}" ]]; then
        printf '%s' "${!var}"
    elif [[ -n "${!filevar:-}" ]]; then
        [[ -r "${!filevar}" ]] || refuse "$filevar=${!filevar} is not readable"
        local pin; pin=$(<"${!filevar}")
        printf '%s' "$pin"
    else
        refuse "need $var or $filevar"
    fi
}
user_pin=$(read_pin SIGNER_HSM_PIN)
so_pin=$(read_pin SIGNER_HSM_SO_PIN)
for p in "$user_pin" "$so_pin"; do
    (( ${#p} >= 4 && ${#p} <= 255 )) || refuse "PINs must be 4-255 characters"
done

tokendir_of() { sed -n 's/^[[:space:]]*directories\.tokendir[[:space:]]*=[[:space:]]*//p' "$1" | tail -n1 | sed 's/[[:space:]]*$//'; }
check_tokendir() {
    [[ "$(realpath -m -- "$1")" != /var/lib/softhsm/tokens ]] || refuse "token dir is the system /var/lib/softhsm/tokens; use a private one"
}

# An existing config is authoritative for where its tokens live.
if [[ -e "$conf" ]]; then
    tokendir=$(tokendir_of "$conf")
    [[ -n "$tokendir" ]] || refuse "$conf has no directories.tokendir"
else
    tokendir=$(realpath -m -- "${SIGNER_HSM_TOKEN_DIR:-$(dirname "$conf")/tokens}")
    [[ "$tokendir" != *$'\n'* ]] || refuse "token dir must not contain a newline"
fi
check_tokendir "$tokendir"

mkdir -p "$(dirname "$conf")"
# Serialise concurrent runs on the same config (e.g. two services starting).
exec 9>"$conf.lock"
flock 9
if [[ ! -e "$conf" ]]; then
    tmpl=$(<"$here/softhsm2.conf.in")
    # Quoted replacement: bash 5.2 would otherwise expand '&' in the path.
    printf '%s\n' "${tmpl//@TOKEN_DIR@/"$tokendir"}" >"$conf.tmp"
    mv -f "$conf.tmp" "$conf"
fi
mkdir -p "$tokendir"

# Labels as printed by --show-slots: fixed 26-char prefix, padded to 32.
labels() {
    softhsm2-util --show-slots \
        | sed -n 's/^[[:space:]]*Label:[[:space:]]\{12\}//p' \
        | sed 's/[[:space:]]*$//'
}
# Captured first: `labels | grep -q` under pipefail could see SIGPIPE and
# wrongly conclude "absent", creating a duplicate token.
present=$(labels)
if grep -Fxq -- "$label" <<<"$present"; then
    echo "softhsm: token '$label' already present"
    exit 0
fi

# softhsm2-util only takes PINs as arguments (it will not read them from a
# pipe), so they are briefly visible in the process list to root/same user.
softhsm2-util --init-token --free --label "$label" --pin "$user_pin" --so-pin "$so_pin" >/dev/null
present=$(labels)
grep -Fxq -- "$label" <<<"$present" || { echo "init-token: token '$label' not found after init" >&2; exit 1; }
echo "softhsm: token '$label' created"
