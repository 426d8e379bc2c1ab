#!/usr/bin/env bash
# Installs the Debian packages Confidant's build, tests and demo need.
# Idempotent: packages already present are skipped; apt-get update runs
# only when something is missing.
set -euo pipefail

packages=(
  # cgo build of the go-tpm-tools TPM simulator
  gcc libc6-dev libssl-dev
  # guests: QEMU (TCG), a real kernel, vTPM
  qemu-system-x86 qemu-utils linux-image-cloud-amd64 swtpm swtpm-tools
  # initramfs tools and LUKS2 interop checks
  busybox-static cpio cryptsetup-bin e2fsprogs
  # firmware
  ovmf seabios
  # UEFI Secure Boot guests: the systemd UKI stub, Authenticode signing and
  # checking (sbsign/sbverify), the FAT ESP (mkfs.vfat, mtools), event-log
  # decoding for diagnostics (tpm2_eventlog)
  systemd-boot-efi sbsigntool osslsigncode dosfstools mtools tpm2-tools
  # the shared store for verifier replicas
  postgresql
  # misc used by scripts
  ca-certificates curl jq
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
