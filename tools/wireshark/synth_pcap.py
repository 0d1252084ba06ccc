#!/usr/bin/env python3
"""synth_pcap.py OUT.pcap: datagrams in the protected rudp format (docs/WIRESHARK.md,
"Protected packets"), which today's server does not send yet: a CRC'd HELLO carrying COOKIE and
BIND frames, a RETRY, an integrity-mode (PROTECTED) DATA packet carrying a whole ipsan READ call, an
ENCRYPTED DATA packet, a protected CLOSE and a 48-byte RESET with a stateless-reset token. Tags,
cookies and ciphertext are fixed filler (a dissector cannot check them without keys).
The expected decode is checked by test/integration/wireshark_test.sh."""
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


CONN = 0x1122334455667788
EPOCH = 0xABCDEF01


def header(ptype, flags, epoch, pn):
    return struct.pack(">BBHQIQ", 1, ptype, flags, CONN, epoch, pn)


def crc_packet(ptype, flags, epoch, pn, body):
    d = header(ptype, flags, epoch, pn) + body
    return d + struct.pack(">I", crc32c(d))


def tagged(ptype, flags, epoch, pn, body):
    return header(ptype, flags, epoch, pn) + body + bytes(range(0xA0, 0xB0))


def read_call():
    # READ of 16 blocks at LBA 0x0102030405060708 on device 5 (docs/PROTOCOL.md example).
    return (struct.pack(">IIIIII", 0xDEADBEEF, 0, 2, 0x20495341, 1, 20) +
            struct.pack(">II", 0x49505331, 20) + struct.pack(">QIQ", 0x1122334455667788, 3, 42) +
            struct.pack(">II", 0x49505331, 16) + bytes(16) +
            struct.pack(">IQIII", 5, 0x0102030405060708, 16, 0, 0))


def message_frame(msg_id, payload):
    return struct.pack(">BQIIH", 3, msg_id, len(payload), 0, len(payload)) + payload


PN0 = 1 << 30
cookie = struct.pack(">Q", 1733600000000) + bytes(range(16))
datagrams = [
    # client -> server: HELLO echoing a cookie and binding a session (CRC'd: not protected yet)
    (True, crc_packet(1, 0, 0, 1, bytes([6]) + cookie + struct.pack(">BQ", 7, 0x7D6A09E1735D8B46) +
                      struct.pack(">BQ", 4, 1 << 24) + bytes(40))),
    # server -> client: RETRY with a cookie (52 bytes)
    (False, crc_packet(6, 0, EPOCH, 0, cookie)),
    # client -> server: integrity mode (PROTECTED, clear frames, tag) with a whole READ call
    (True, tagged(3, 0x0002, EPOCH, PN0, message_frame(1, read_call()))),
    # server -> client: encrypted (opaque)
    (False, tagged(3, 0x0006, EPOCH, PN0 + 7, bytes(range(60)))),
    # server -> client: integrity-mode ACK + RESET_TOKEN
    (False, tagged(3, 0x0002, EPOCH, PN0 + 8,
                   struct.pack(">BQIBI", 2, PN0, 25, 1, 0) + bytes([5]) + bytes(range(16)))),
    # client -> server: protected CLOSE (reason 19 SHUTDOWN), padded to 32 before the tag: 48 bytes
    (True, tagged(5, 0x0002, EPOCH, PN0 + 1, struct.pack(">I", 19) + bytes(4))),
    # server -> client: RESET with a stateless-reset token (48 bytes)
    (False, crc_packet(4, 0, EPOCH, 5, struct.pack(">I", 2) + bytes(range(16, 32)))),
]


def ip_udp(src_port, dst_port, payload):
    udp = struct.pack(">HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    s = sum(struct.unpack(">10H", ip))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack(">H", (~s) & 0xFFFF) + ip[12:]
    return ip + udp


with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # LINKTYPE_RAW
    for i, (to_server, d) in enumerate(datagrams):
        pkt = ip_udp(40000, 5260, d) if to_server else ip_udp(5260, 40000, d)
        f.write(struct.pack("<IIII", 1700000000, i * 1000, len(pkt), len(pkt)))
        f.write(pkt)
