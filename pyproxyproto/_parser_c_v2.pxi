# Version 2: the binary header, its TLV area and CRC32C.
# Included by _parser_c.pyx (one extension module); declarations in _parser_c.pxd.

cdef object _parse_v2(const unsigned char *b, Py_ssize_t n, bint verify):
    cdef int command, fam, block
    cdef Py_ssize_t length, total, tlv_start, crc_offset = -1
    cdef ProxyHeader h
    if n < V2_FIXED:
        _check_v2_prefix(b, n)
        raise _incomplete(n, V2_FIXED)
    command = b[12] & 0x0F
    fam = b[13]
    if (memcmp(b, PyBytes_AS_STRING(_SIG), 12) != 0 or b[12] >> 4 != V2_VERSION or command > CMD_PROXY
            or (command and not PROXY_FAMILY_OK[fam])):
        _check_v2_prefix(b, n)
    length = (b[14] << 8) | b[15]
    total = V2_FIXED + length
    block = BLOCK_LEN[fam >> 4]
    if command:
        if length < block:
            # Raised out of line, as every error of the fixed part: here its
            # formatting would make _parse_v2 too big for the compiler to
            # inline it into _parse (about 20 instructions per header).
            _check_v2_prefix(b, n)
    elif length < block:
        # LOCAL: the advertised family's address block is skipped when it
        # fits; TLVs, if any, follow it (or the fixed part when it does not).
        block = 0
    tlv_start = V2_FIXED + block
    # PROXY with addresses: the rest must be TLVs, refused as soon as a
    # byte shows it is not.  LOCAL and PROXY over AF_UNSPEC: a body the
    # receiver must ignore, read once it is all there; its TLVs are kept
    # when it is a valid TLV area, and it is discarded when not.
    if tlv_start < total and (n >= total or (command and block)):
        crc_offset = _walk_tlvs(b, n, tlv_start, total, command and block)
        if crc_offset == NOT_TLVS:
            tlv_start = total
            crc_offset = -1
    if n < total:
        raise _incomplete(n, total)
    if crc_offset >= 0 and verify:
        _verify_crc(b, crc_offset, total)

    h = ProxyHeader.__new__(ProxyHeader)
    h._version = 2
    h._command = command
    h._family = FAMILY_OF[fam >> 4]
    h._protocol = PROTOCOL_OF[fam & 0x0F]
    h._length = total
    h._tlv_start = tlv_start
    if command and (h._family == F_INET or h._family == F_INET6):
        h._has_ip = True
        if h._family == F_INET:
            memcpy(&h._addr[0], b + 16, 4)
            memcpy(&h._addr[16], b + 20, 4)
            h._sport = (b[24] << 8) | b[25]
            h._dport = (b[26] << 8) | b[27]
        else:
            h._v6 = True
            memcpy(h._addr, b + 16, 32)
            h._sport = (b[48] << 8) | b[49]
            h._dport = (b[50] << 8) | b[51]
    if tlv_start < total or (command and h._family == F_UNIX):
        h._raw = PyBytes_FromStringAndSize(<const char *>b, total)
    return h


cdef int _check_v2_prefix(const unsigned char *b, Py_ssize_t n) except -1:
    """Raise for the first byte of a v2 fixed part that no header can have
    (the length field counts as one: a PROXY address block must fit)."""
    cdef const unsigned char *sig = <const unsigned char *>PyBytes_AS_STRING(_SIG)
    cdef Py_ssize_t i
    cdef int length, block
    for i in range(min(n, 12)):
        if b[i] != sig[i]:
            raise _invalid(C.MSG_V2_SIGNATURE, i)
    if n > 12:
        if b[12] >> 4 != V2_VERSION:
            raise InvalidHeader(C.MSG_V2_VERSION.format(version=b[12] >> 4), 12)
        if b[12] & 0x0F > CMD_PROXY:
            raise InvalidHeader(C.MSG_V2_COMMAND.format(command=b[12] & 0x0F), 12)
        if n > 13 and b[12] & 0x0F and not PROXY_FAMILY_OK[b[13]]:
            raise InvalidHeader(C.MSG_V2_FAMILY.format(family=b[13]), 13)
        if n > 15 and b[12] & 0x0F:
            length = (b[14] << 8) | b[15]
            block = BLOCK_LEN[b[13] >> 4]
            if length < block:
                raise InvalidHeader(C.MSG_V2_ADDRESS_LENGTH.format(length=length, needed=block), 14)
    return 0


cdef enum:
    # _walk_tlvs's answer, when not strict, for a body that is not TLVs
    NOT_TLVS = -3


cdef Py_ssize_t _walk_tlvs(const unsigned char *b, Py_ssize_t n, Py_ssize_t off,
                           Py_ssize_t total, bint strict) except -2:
    """Check the TLVs of b[off:total] present so far (b holds n bytes);
    return the first CRC32C TLV's offset or -1.  As soon as they cannot
    form a valid TLV area: InvalidHeader when strict, NOT_TLVS when not."""
    cdef Py_ssize_t crc_offset = -1, end
    cdef int tlv_type, tlv_length
    while off < total:
        if total - off < TLV_HDR:
            if not strict:
                return NOT_TLVS
            raise InvalidHeader(C.MSG_V2_TLV_TRUNCATED.format(count=total - off, offset=off), off)
        if off + TLV_HDR > n:
            break
        tlv_type = b[off]
        tlv_length = (b[off + 1] << 8) | b[off + 2]
        end = off + TLV_HDR + tlv_length
        if end > total:
            if not strict:
                return NOT_TLVS
            raise InvalidHeader(C.MSG_V2_TLV_OVERRUN.format(type=tlv_type, offset=off), off)
        if tlv_type == T_CRC32C:
            if tlv_length != CRC_LEN:
                if not strict:
                    return NOT_TLVS
                _tlv_length_error(tlv_type, off, tlv_length)
            if crc_offset < 0:
                crc_offset = off
        elif tlv_type == T_UNIQUE_ID and tlv_length > UNIQUE_ID_MAX:
            if not strict:
                return NOT_TLVS
            _tlv_length_error(tlv_type, off, tlv_length)
        off = end
    return crc_offset


cdef int _tlv_length_error(int tlv_type, Py_ssize_t off, int length) except -1:
    raise InvalidHeader(C.MSG_V2_TLV_LENGTH.format(type=tlv_type, offset=off, length=length), off)


cdef int _verify_crc(const unsigned char *b, Py_ssize_t off, Py_ssize_t total) except -1:
    # The checksum covers the header with the CRC value itself zeroed; the
    # caller's buffer is not touched, the zeros are fed in between.
    cdef Py_ssize_t value = off + TLV_HDR
    cdef uint32_t expected = ((<uint32_t>b[value] << 24) | (<uint32_t>b[value + 1] << 16)
                              | (<uint32_t>b[value + 2] << 8) | b[value + 3])
    cdef unsigned char zeros[4]
    cdef uint32_t crc
    zeros[0] = zeros[1] = zeros[2] = zeros[3] = 0
    crc = pp_crc32c(0, b, <size_t>value)
    crc = pp_crc32c(crc, zeros, 4)
    crc = pp_crc32c(crc, b + value + 4, <size_t>(total - value - 4))
    if crc != expected:
        raise ChecksumMismatch(
            C.MSG_V2_CHECKSUM.format(offset=off, expected=expected, computed=crc),
            off, expected, crc)
    return 0
