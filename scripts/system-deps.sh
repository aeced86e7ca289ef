#!/usr/bin/env bash
# The system packages the tests need beyond Python: PortAudio, for sounddevice (the audio tests run
# the real sounddevice -> PortAudio -> ALSA path through ALSA's file plugins).
# Installs them where it can (root with apt-get, as CI is); elsewhere stops with the exact command.
set -euo pipefail
[ "$(uname -s)" = "Linux" ] || exit 0   # macOS and Windows: sounddevice's wheel carries PortAudio

have_portaudio() {
  { command -v ldconfig >/dev/null && ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; } ||
    ls /usr/lib/libportaudio.so.2 /usr/lib/*/libportaudio.so.2 /usr/lib64/libportaudio.so.2 >/dev/null 2>&1
}
have_portaudio && exit 0

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing libportaudio2 (PortAudio, for the audio tests)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq libportaudio2 >/dev/null
  have_portaudio && exit 0
fi

if command -v apt-get >/dev/null; then cmd="sudo apt-get install libportaudio2"
elif command -v dnf >/dev/null; then cmd="sudo dnf install portaudio"
elif command -v pacman >/dev/null; then cmd="sudo pacman -S portaudio"
elif command -v apk >/dev/null; then cmd="sudo apk add portaudio"
elif command -v zypper >/dev/null; then cmd="sudo zypper install libportaudio2"
else cmd="install PortAudio (libportaudio.so.2) with your system's package manager"
fi
echo "the tests need PortAudio, which is not installed: run \`$cmd\`, then run ./scripts/test.sh again" >&2
exit 1
