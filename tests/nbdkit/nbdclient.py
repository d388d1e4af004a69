# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A small NBD client for the tests, written from the NBD protocol alone: the
# fixed newstyle handshake with NBD_OPT_GO, then requests with simple
# replies, one at a time or several in flight, each answered with the
# server's own error code, so that a test sees exactly what nbdkit sent.

import errno
import socket
import struct

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
OPTION_REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_ABORT = 2
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_FLAG_ERROR = 1 << 31
INFO_EXPORT = 0

# Transmission flags.
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_CAN_MULTI_CONN = 1 << 8
FLAG_SEND_FAST_ZERO = 1 << 11

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_FAST_ZERO = 1 << 4

# The protocol's error values are Linux's errno values.
EPERM = errno.EPERM
EIO = errno.EIO
EINVAL = errno.EINVAL
ENOSPC = errno.ENOSPC
ENOTSUP = errno.ENOTSUP

COMMAND_NAMES = {CMD_READ: 'read', CMD_WRITE: 'write', CMD_FLUSH: 'flush', CMD_TRIM: 'trim',
                 CMD_WRITE_ZEROES: 'zero'}


class Disconnected(Exception):
    """The server closed the connection (or died) before replying."""


class NbdError(Exception):
    def __init__(self, command, error):
        Exception.__init__(self, '%s failed with error %d (%s)' % (
            COMMAND_NAMES.get(command, command), error, errno.errorcode.get(error, '?')))
        self.command = command
        self.error = error


class Client:
    """One connection to the default export of a server on a Unix socket, or
    on a socket given connected."""

    def __init__(self, socket_path=None, timeout=120, connected=None):
        """Connect to the server on @socket_path, or speak over @connected, a
        socket already connected to a server (nbdkit -s on its other end)."""
        if connected is not None:
            self.sock = connected
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(socket_path)
        self.sock.settimeout(timeout)
        self.next_cookie = 1
        self.in_flight = {}  # cookie -> (command, length)
        self._handshake()

    def _recv(self, n):
        chunks = []
        while n > 0:
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Disconnected(str(e))
            if not chunk:
                raise Disconnected('end of stream')
            chunks.append(chunk)
            n -= len(chunk)
        return b''.join(chunks)

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Disconnected(str(e))

    def _handshake(self):
        magic, opt_magic, flags = struct.unpack('>QQH', self._recv(18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise AssertionError('not an NBD newstyle server')
        if not flags & FLAG_FIXED_NEWSTYLE:
            raise AssertionError('the server does not speak fixed newstyle')
        client_flags = FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)
        self._send(struct.pack('>I', client_flags))
        # NBD_OPT_GO for the default export, asking for no extra information.
        data = struct.pack('>I', 0) + struct.pack('>H', 0)
        self._send(struct.pack('>QII', IHAVEOPT, OPT_GO, len(data)) + data)
        self.size = None
        self.flags = None
        while True:
            magic, option, reply, length = struct.unpack('>QIII', self._recv(20))
            payload = self._recv(length)
            if magic != OPTION_REPLY_MAGIC or option != OPT_GO:
                raise AssertionError('bad option reply')
            if reply & REP_FLAG_ERROR:
                raise AssertionError('NBD_OPT_GO refused (%#x): %r' % (reply, payload))
            if reply == REP_INFO:
                (info,) = struct.unpack('>H', payload[:2])
                if info == INFO_EXPORT:
                    self.size, self.flags = struct.unpack('>QH', payload[2:12])
            elif reply == REP_ACK:
                break
        if self.size is None:
            raise AssertionError('the server sent no export size')

    def has(self, flag):
        return bool(self.flags & flag)

    # Pipelined requests: send() returns a cookie, receive() the next reply.

    def send(self, command, offset=0, length=0, data=None, flags=0):
        cookie = self.next_cookie
        self.next_cookie += 1
        if data is not None:
            length = len(data)
        header = struct.pack('>IHHQQI', REQUEST_MAGIC, flags, command, cookie, offset, length)
        self._send(header + (data or b''))
        self.in_flight[cookie] = (command, length)
        return cookie

    def receive(self):
        """(cookie, error, data) of the next reply: error 0 on success, data for reads."""
        magic, error, cookie = struct.unpack('>IIQ', self._recv(16))
        if magic != SIMPLE_REPLY_MAGIC or cookie not in self.in_flight:
            raise AssertionError('bad reply (magic %#x, cookie %d)' % (magic, cookie))
        command, length = self.in_flight.pop(cookie)
        data = None
        if command == CMD_READ and error == 0:
            data = self._recv(length)
        return cookie, error, data

    def request(self, command, offset=0, length=0, data=None, flags=0):
        """Send one request and wait for its reply (nothing else in flight)."""
        if self.in_flight:
            raise AssertionError('request() with requests in flight')
        self.send(command, offset, length, data, flags)
        _, error, reply = self.receive()
        if error:
            raise NbdError(command, error)
        return reply

    def error_of(self, command, offset=0, length=0, data=None, flags=0):
        """The error code of one request: 0 when it succeeded."""
        try:
            self.request(command, offset, length, data, flags)
        except NbdError as e:
            return e.error
        return 0

    def pread(self, offset, length):
        return self.request(CMD_READ, offset, length)

    def pwrite(self, data, offset, flags=0):
        self.request(CMD_WRITE, offset, data=data, flags=flags)

    def zero(self, offset, length, flags=0):
        self.request(CMD_WRITE_ZEROES, offset, length, flags=flags)

    def trim(self, offset, length, flags=0):
        self.request(CMD_TRIM, offset, length, flags=flags)

    def flush(self):
        self.request(CMD_FLUSH)

    def close(self):
        """Disconnect politely (NBD_CMD_DISC), as a client that is done does."""
        try:
            if not self.in_flight:
                self._send(struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        except Disconnected:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
