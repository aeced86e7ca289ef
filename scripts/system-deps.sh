#!/usr/bin/env bash
# The system packages the tests need beyond Python:
#   - PortAudio, for sounddevice (the audio tests run the real sounddevice -> PortAudio -> ALSA path
#     through ALSA's file plugins);
#   - the openssl command, which makes the self-signed certificate of the remote engine's TLS test.
# Installs what is missing where it can (root with apt-get, as CI is); elsewhere stops with the exact command.
set -euo pipefail

have_portaudio() {
  [ "$(uname -s)" != "Linux" ] && return 0   # macOS and Windows: sounddevice's wheel carries PortAudio
  { command -v ldconfig >/dev/null && ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; } ||
    ls /usr/lib/libportaudio.so.2 /usr/lib/*/libportaudio.so.2 /usr/lib64/libportaudio.so.2 >/dev/null 2>&1
}
have_openssl() { command -v openssl >/dev/null; }

missing() {  # the packages still missing, as apt names them
  local out=()
  have_portaudio || out+=(libportaudio2)
  have_openssl || out+=(openssl)
  echo "${out[@]:-}"
}

need="$(missing)"
[ -z "$need" ] && exit 0

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing $need (for the tests)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq $need >/dev/null
  need="$(missing)"
  [ -z "$need" ] && exit 0
fi

portaudio=""
openssl=""
for p in $need; do
  case "$p" in
    libportaudio2) portaudio=1 ;;
    openssl) openssl=1 ;;
  esac
done
pkgs() {  # $1: the name of PortAudio's package, $2: openssl's
  local out=()
  [ -n "$portaudio" ] && out+=("$1")
  [ -n "$openssl" ] && out+=("$2")
  echo "${out[*]}"
}
if command -v apt-get >/dev/null; then cmd="sudo apt-get install $(pkgs libportaudio2 openssl)"
elif command -v dnf >/dev/null; then cmd="sudo dnf install $(pkgs portaudio openssl)"
elif command -v pacman >/dev/null; then cmd="sudo pacman -S $(pkgs portaudio openssl)"
elif command -v apk >/dev/null; then cmd="sudo apk add $(pkgs portaudio openssl)"
elif command -v zypper >/dev/null; then cmd="sudo zypper install $(pkgs libportaudio2 openssl)"
elif command -v brew >/dev/null; then cmd="brew install $(pkgs portaudio openssl)"
else cmd="install $(pkgs 'PortAudio (libportaudio.so.2)' 'the openssl command') with your system's package manager"
fi
what="$(pkgs PortAudio 'the openssl command' | sed 's/ the / and the /')"
verb="is"
[ -n "$portaudio" ] && [ -n "$openssl" ] && verb="are"
echo "the tests need $what, which $verb not installed: run \`$cmd\`, then run ./scripts/test.sh again" >&2
exit 1
