"""The one pinned MicroPython release for the ESP32, and its flash layout.

Layout of ESP32_GENERIC builds from v1.26 on (ports/esp32/partitions-4MiB.csv, as recorded in
shared/FACTS.md): the app image at 0x1000; the vfs (littlefs2) partition from 0x200000 to the end
of a 4 MB flash, 512 blocks of 4096 bytes. littlefs refuses to mount an image whose block count
differs from the partition, so these numbers and the release move together.
"""

VERSION = "v1.26.1"
BOARD = "ESP32_GENERIC"
FILENAME = "ESP32_GENERIC-20250911-v1.26.1.bin"
URL = "https://micropython.org/resources/firmware/" + FILENAME

# The SHA-256 of FILENAME as published. This machine cannot reach micropython.org and no public
# record of the hash could be found here, so none is pinned: `make flash` refuses an unverified
# download and asks for FIRMWARE=path (a file you verified), until someone who has checked the
# hash records it with: python -m flashing pin --firmware path/to/ESP32_GENERIC-...bin
SHA256 = None

APP_OFFSET = 0x1000
FLASH_SIZE = 4 * 1024 * 1024
VFS_OFFSET = 0x200000
VFS_SIZE = FLASH_SIZE - VFS_OFFSET
BLOCK_SIZE = 4096
BLOCK_COUNT = VFS_SIZE // BLOCK_SIZE  # 512
# The littlefs geometry MicroPython mounts on this partition (shared/FACTS.md: Wokwi and esp32 notes).
PROG_SIZE = 256
READ_SIZE = 256
