# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A small reader of VHDX structures written from MS-VHDX alone, for the
# Python tests: an oracle that shares no code with the engine.  It reads
# the file identifier, the headers, region table 1, the metadata items and
# BAT entries, and checks the CRC-32C of headers and region tables; and it
# rewrites a parent locator, as another tool (Hyper-V) would have written it.

import struct
import uuid

KiB = 1024
MiB = 1024 * KiB

HEADER_OFFSETS = (64 * KiB, 128 * KiB)
REGION_TABLE_OFFSET = 192 * KiB
HEADER_SIZE = 4 * KiB
REGION_TABLE_SIZE = 64 * KiB

BAT_REGION = uuid.UUID('2DC27766-F623-4200-9D64-115E9BFD4A08')
METADATA_REGION = uuid.UUID('8B7CA206-4790-4B9A-B8FE-575F050F886E')

FILE_PARAMETERS = uuid.UUID('CAA16737-FA36-4D43-B3B6-33F0AA44E76B')
VIRTUAL_DISK_SIZE = uuid.UUID('2FA54224-CD1B-4876-B211-5DBED83BF4B8')
VIRTUAL_DISK_ID = uuid.UUID('BECA12AB-B2E6-4523-93EF-C309E000C746')
LOGICAL_SECTOR_SIZE = uuid.UUID('8141BF1D-A96F-4709-BA47-F233A8FAAB5F')
PHYSICAL_SECTOR_SIZE = uuid.UUID('CDA348C7-445D-4471-9CC9-E9885251C556')
PARENT_LOCATOR = uuid.UUID('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C')
LOCATOR_TYPE_VHDX = uuid.UUID('B04AEFB7-D19E-4A81-B789-25B8E9445913')

# BAT payload block states.
NOT_PRESENT = 0
ZERO = 2
FULLY_PRESENT = 6
PARTIALLY_PRESENT = 7


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), reflected, initial value and final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b'123456789') == 0xE3069283


def checksum_ok(data, field=4):
    """The CRC-32C of @data with its 4-byte checksum field at @field zeroed."""
    (stored,) = struct.unpack_from('<I', data, field)
    return crc32c(data[:field] + bytes(4) + data[field + 4:]) == stored


def guid_text(raw):
    """A GUID in the on-disk layout (Data1-3 little-endian) as lowercase text."""
    return str(uuid.UUID(bytes_le=bytes(raw)))


def _read(f, offset, length):
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise ValueError('short read at %d' % offset)
    return data


class Vhdx:
    """The structures of one VHDX file, as the specification lays them out."""

    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            ident = _read(f, 0, 64 * KiB)
            if ident[:8] != b'vhdxfile':
                raise ValueError('%s: no file identifier' % path)
            self.creator = ident[8:520].decode('utf-16-le').split('\0', 1)[0]

            self.headers = []
            for offset in HEADER_OFFSETS:
                raw = _read(f, offset, HEADER_SIZE)
                valid = raw[:4] == b'head' and checksum_ok(raw)
                sequence, = struct.unpack_from('<Q', raw, 8)
                log_version, version, log_length, log_offset = struct.unpack_from(
                    '<HHIQ', raw, 64)
                self.headers.append({
                    'offset': offset,
                    'valid': valid,
                    'sequence': sequence,
                    'file-write-guid': guid_text(raw[16:32]),
                    'data-write-guid': guid_text(raw[32:48]),
                    'log-guid': guid_text(raw[48:64]),
                    'log-version': log_version,
                    'version': version,
                    'log-length': log_length,
                    'log-offset': log_offset,
                })
            valid = [h for h in self.headers if h['valid']]
            if not valid:
                raise ValueError('%s: no valid header' % path)
            # The current header: the valid one with the larger sequence number.
            self.header = max(valid, key=lambda h: h['sequence'])

            table = _read(f, REGION_TABLE_OFFSET, REGION_TABLE_SIZE)
            if table[:4] != b'regi' or not checksum_ok(table):
                raise ValueError('%s: region table 1 is not valid' % path)
            (count,) = struct.unpack_from('<I', table, 8)
            self.regions = {}
            for i in range(count):
                entry = 16 + 32 * i
                guid = uuid.UUID(bytes_le=table[entry:entry + 16])
                offset, length, required = struct.unpack_from('<QII', table, entry + 16)
                self.regions[guid] = (offset, length, required & 1)

            offset, length, _ = self.regions[METADATA_REGION]
            self.metadata_offset = offset
            region = _read(f, offset, length)
            if region[:8] != b'metadata':
                raise ValueError('%s: no metadata table' % path)
            (count,) = struct.unpack_from('<H', region, 10)
            self.items = {}
            self.item_offsets = {}
            self.item_flags = {}
            for i in range(count):
                entry = 32 + 32 * i
                guid = uuid.UUID(bytes_le=region[entry:entry + 16])
                item_offset, item_length, flags = struct.unpack_from('<III', region, entry + 16)
                self.items[guid] = region[item_offset:item_offset + item_length]
                self.item_offsets[guid] = offset + item_offset
                self.item_flags[guid] = flags

        self.block_size, self.file_parameter_flags = struct.unpack(
            '<II', self.items[FILE_PARAMETERS])
        (self.virtual_size,) = struct.unpack('<Q', self.items[VIRTUAL_DISK_SIZE])
        self.virtual_disk_id = guid_text(self.items[VIRTUAL_DISK_ID])
        (self.logical_sector_size,) = struct.unpack('<I', self.items[LOGICAL_SECTOR_SIZE])
        (self.physical_sector_size,) = struct.unpack('<I', self.items[PHYSICAL_SECTOR_SIZE])
        self.bat_offset = self.regions[BAT_REGION][0]
        self.chunk_ratio = (1 << 23) * self.logical_sector_size // self.block_size
        self.payload_blocks = -(-self.virtual_size // self.block_size)

    @property
    def has_parent(self):
        return bool(self.file_parameter_flags & 2)

    def parent_locator(self):
        """The key-value pairs of the parent locator, or None."""
        item = self.items.get(PARENT_LOCATOR)
        if item is None:
            return None
        (count,) = struct.unpack_from('<H', item, 18)
        pairs = {}
        for i in range(count):
            key_offset, value_offset, key_length, value_length = struct.unpack_from(
                '<IIHH', item, 20 + 12 * i)
            key = item[key_offset:key_offset + key_length].decode('utf-16-le')
            pairs[key] = item[value_offset:value_offset + value_length].decode('utf-16-le')
        return pairs

    def bat_entry(self, index):
        with open(self.path, 'rb') as f:
            (entry,) = struct.unpack('<Q', _read(f, self.bat_offset + 8 * index, 8))
        return entry

    def payload_entry(self, block):
        """(state, file offset) of payload block @block: BAT entry b + floor(b / CR)."""
        entry = self.bat_entry(block + block // self.chunk_ratio)
        return entry & 7, entry & ~0xFFFFF

    def stored_blocks(self):
        """{block: file offset} of the FULLY_PRESENT payload blocks."""
        last = self.payload_blocks - 1
        count = last + last // self.chunk_ratio + 1
        with open(self.path, 'rb') as f:
            bat = _read(f, self.bat_offset, 8 * count)
        stored = {}
        for block in range(self.payload_blocks):
            (entry,) = struct.unpack_from('<Q', bat, 8 * (block + block // self.chunk_ratio))
            if entry & 7 == FULLY_PRESENT:
                stored[block] = entry & ~0xFFFFF
        return stored


def encode_parent_locator(pairs):
    """The parent locator item (MS-VHDX 2.6.2.6) holding @pairs, a list of
    (key, value) in order: the VHDX locator type, then 12-byte entries, then
    the keys and values in UTF-16LE."""
    header = LOCATOR_TYPE_VHDX.bytes_le + struct.pack('<HH', 0, len(pairs))
    text = b''
    entries = b''
    base = len(header) + 12 * len(pairs)
    for key, value in pairs:
        k, v = key.encode('utf-16-le'), value.encode('utf-16-le')
        entries += struct.pack('<IIHH', base + len(text), base + len(text) + len(k), len(k),
                               len(v))
        text += k + v
    return header + entries + text


def write_parent_locator(path, pairs):
    """Replace the parent locator of the differencing image @path with one of
    @pairs, in place of the old item (its metadata table entry's length updated;
    the metadata region is not checksummed)."""
    spec = Vhdx(path)
    item = encode_parent_locator(pairs)
    offset, length, _ = spec.regions[METADATA_REGION]
    with open(path, 'r+b') as f:
        region = bytearray(_read(f, offset, length))
        (count,) = struct.unpack_from('<H', region, 10)
        for i in range(count):
            entry = 32 + 32 * i
            if uuid.UUID(bytes_le=bytes(region[entry:entry + 16])) != PARENT_LOCATOR:
                continue
            (item_offset,) = struct.unpack_from('<I', region, entry + 16)
            if item_offset + len(item) > length:
                raise ValueError('%s: no room for the new parent locator' % path)
            struct.pack_into('<I', region, entry + 20, len(item))
            region[item_offset:item_offset + len(item)] = item
            f.seek(offset)
            f.write(region)
            return
    raise ValueError('%s: no parent locator' % path)


def add_metadata_item(path, guid, data, flags):
    """Add a metadata item @guid (a uuid.UUID) holding @data with the entry
    flags @flags (IsUser 1, IsVirtualDisk 2, IsRequired 4) to the image at
    @path: the data 8-byte aligned past every item, a new table entry."""
    spec = Vhdx(path)
    offset, length, _ = spec.regions[METADATA_REGION]
    with open(path, 'r+b') as f:
        region = bytearray(_read(f, offset, length))
        (count,) = struct.unpack_from('<H', region, 10)
        end = 64 * 1024
        for i in range(count):
            item_offset, item_length = struct.unpack_from('<II', region, 32 + 32 * i + 16)
            if item_length:
                end = max(end, item_offset + item_length)
        place = (end + 7) // 8 * 8
        if place + len(data) > length:
            raise ValueError('%s: no room for the item' % path)
        entry = 32 + 32 * count
        region[entry:entry + 32] = guid.bytes_le + struct.pack('<IIII', place, len(data),
                                                               flags, 0)
        struct.pack_into('<H', region, 10, count + 1)
        region[place:place + len(data)] = data
        f.seek(offset)
        f.write(region)
