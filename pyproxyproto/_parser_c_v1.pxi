# Version 1: the text line, its addresses and ports.
# Included by _parser_c.pyx (one extension module); declarations in _parser_c.pxd.

cdef struct Address:
    # Incremental validator of one v1 address; see _Address in _parser_py.
    bint v6
    int lead       # v6: 0 nothing yet, 1 a lone leading ':', 2 inside
    int groups     # v6: 16-bit groups completed
    bint dc        # v6: '::' seen
    int xd         # v6: hex digits in the current group
    bint single    # v6: last byte was a ':' that ended a group
    int tokdec     # v6: current group as a decimal octet, -1 if it cannot be one
    bint v4        # dotted-quad part active
    int octets
    bint digit     # a digit seen in the current octet
    int cur


cdef inline void _addr_init(Address *a, bint v6) noexcept nogil:
    a.v6 = v6
    a.lead = 0
    a.groups = 0
    a.dc = False
    a.xd = 0
    a.single = False
    a.tokdec = 0
    a.v4 = not v6
    a.octets = 0
    a.digit = False
    a.cur = 0


cdef inline bint _is_hex(unsigned char c) noexcept nogil:
    return (0x30 <= c <= 0x39) or (0x61 <= c <= 0x66) or (0x41 <= c <= 0x46)


cdef inline bint _feed_v4(Address *a, unsigned char c) noexcept nogil:
    if 0x30 <= c <= 0x39:
        if a.digit and a.cur == 0:
            return False
        a.cur = a.cur * 10 + c - 0x30
        if a.cur > 255:
            return False
        if not a.digit:
            a.octets += 1
            if a.octets > 4:
                return False
            a.digit = True
        return True
    if c == 0x2E:
        if not a.digit or a.octets == 4:
            return False
        a.digit = False
        a.cur = 0
        return True
    return False


cdef inline bint _addr_feed(Address *a, unsigned char c) noexcept nogil:
    if a.v4:
        return _feed_v4(a, c)
    if a.lead == 0:
        a.lead = 2
        if c == 0x3A:
            a.lead = 1
            return True
    elif a.lead == 1:
        if c != 0x3A:
            return False
        a.lead = 2
    if _is_hex(c):
        if a.xd == 4:
            return False
        a.xd += 1
        a.single = False
        if 0x30 <= c <= 0x39:
            if a.tokdec >= 0:
                if a.xd > 1 and a.tokdec == 0:
                    a.tokdec = -1
                else:
                    a.tokdec = a.tokdec * 10 + c - 0x30
                    if a.tokdec > 255:
                        a.tokdec = -1
        else:
            a.tokdec = -1
        # '::' must stand for at least one group.
        if a.xd == 1 and a.groups + 1 >= (8 if a.dc else 9):
            return False
        return True
    if c == 0x3A:
        if a.xd == 0:
            if a.dc:
                return False
            a.dc = True
            a.single = False
            return True
        a.groups += 1
        a.xd = 0
        a.single = True
        a.tokdec = 0
        return a.groups < (7 if a.dc else 8)
    if c == 0x2E:
        if a.xd == 0 or a.tokdec < 0:
            return False
        if (a.groups > 5) if a.dc else (a.groups != 6):
            return False
        a.v4 = True
        a.octets = 1
        a.digit = False
        a.cur = 0
        return True
    return False


cdef inline bint _addr_complete(Address *a) noexcept nogil:
    cdef int groups
    if a.v4:
        return a.octets == 4 and a.digit
    if a.lead < 2 or (a.xd == 0 and a.single):
        return False
    groups = a.groups + (1 if a.xd else 0)
    return groups < 8 if a.dc else groups == 8


cdef inline int _addr_need(Address *a) noexcept nogil:
    cdef int left
    if a.v4:
        left = 2 * (4 - a.octets)
        return left if a.digit else left - 1
    if a.lead < 2:
        return 2 - a.lead
    if a.xd:
        return 0 if (a.dc or a.groups == 7) else 2
    return 1 if a.single else 0


cdef inline int _v1_need(int state, Address *a, bint v6, int port_digits) noexcept nogil:
    # Bytes still needed, at the least, to finish the line from this state;
    # " 0 0\r\n" follows the destination, "0.0.0.0" / "::" is the shortest address.
    if state == ST_SRC:
        return _addr_need(a) + 1 + (V1_MIN_IPV6 if v6 else V1_MIN_IPV4) + V1_AFTER_DST
    if state == ST_DST:
        return _addr_need(a) + V1_AFTER_DST
    if state == ST_SPORT:
        return (0 if port_digits else 1) + V1_AFTER_SPORT
    if state == ST_DPORT:
        return (0 if port_digits else 1) + V1_AFTER_DPORT
    if state == ST_LF:
        return 1
    return 2


cdef object _scan_v1(const unsigned char *b, Py_ssize_t n):
    """Byte-by-byte v1 parser, the twin of _parser_py._scan_v1."""
    cdef Py_ssize_t limit = n if n < V1_MAX else V1_MAX
    # Below this offset no state can need more than the limit allows.
    cdef Py_ssize_t check_from = V1_CHECK_FROM
    cdef const unsigned char *prefix = <const unsigned char *>PyBytes_AS_STRING(_V1_PREFIX)
    cdef const unsigned char *tcp = <const unsigned char *>PyBytes_AS_STRING(_V1_TCP4)
    cdef const unsigned char *unknown = <const unsigned char *>PyBytes_AS_STRING(_V1_UNKNOWN)
    cdef int state = ST_KEYWORD
    cdef bint v6 = False
    cdef Address a
    cdef int port_digits = 0
    cdef long port = 0
    cdef long ports[2]
    cdef Py_ssize_t spans[4]
    cdef Py_ssize_t i
    cdef unsigned char c
    ports[0] = ports[1] = 0
    spans[0] = spans[1] = spans[2] = spans[3] = 0
    _addr_init(&a, False)
    for i in range(limit):
        c = b[i]
        if state == ST_KEYWORD:
            if i < 6:
                if c != prefix[i]:
                    raise _invalid(C.MSG_V1_PREFIX, i)
                continue
            if i == 6:
                if c != V1_T and c != V1_U:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if b[6] == V1_T:
                if i == 9:
                    if c != V1_4 and c != V1_6:
                        raise _invalid(C.MSG_V1_PROTOCOL, i)
                    v6 = c == V1_6
                elif c != tcp[i - 6]:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                if i == 10:
                    state = ST_SRC
                    _addr_init(&a, v6)
                    spans[0] = i + 1
                continue
            if i < 13:
                if c != unknown[i - 6]:
                    raise _invalid(C.MSG_V1_PROTOCOL, i)
                continue
            if c == 0x20:
                state = ST_TAIL
            elif c == 0x0D:
                state = ST_LF
            else:
                raise _invalid(C.MSG_V1_PROTOCOL, i)
        elif state == ST_SRC or state == ST_DST:
            if c == 0x20:
                if not _addr_complete(&a):
                    raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
                if state == ST_SRC:
                    spans[1] = i
                    spans[2] = i + 1
                    _addr_init(&a, v6)
                    state = ST_DST
                else:
                    spans[3] = i
                    state = ST_SPORT
                    port_digits = 0
                    port = 0
            elif not _addr_feed(&a, c):
                raise _invalid(C.MSG_V1_IPV6 if v6 else C.MSG_V1_IPV4, i)
        elif state == ST_SPORT or state == ST_DPORT:
            if c == (0x20 if state == ST_SPORT else 0x0D):
                if port_digits == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                ports[state - ST_SPORT] = port
                state += 1
                port_digits = 0
                port = 0
            elif 0x30 <= c <= 0x39:
                if port_digits and port == 0:
                    raise _invalid(C.MSG_V1_PORT, i)
                port = port * 10 + c - 0x30
                port_digits += 1
                if port > 0xFFFF:
                    raise _invalid(C.MSG_V1_PORT, i)
            else:
                raise _invalid(C.MSG_V1_PORT, i)
        elif state == ST_LF:
            if c != 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
            return _v1_result(b, i + 1, v6, spans, ports)
        else:
            if c == 0x0D:
                state = ST_LF
            elif c == 0x0A:
                raise _invalid(C.MSG_V1_CRLF, i)
        if i >= check_from and i + 1 + _v1_need(state, &a, v6, port_digits) > V1_MAX:
            raise _invalid(C.MSG_V1_TOO_LONG, i)
    raise _incomplete(n, n + 1)


cdef object _fast_v1(const unsigned char *b, Py_ssize_t n):
    """A complete, valid TCP4/TCP6 line in one tight pass, or None.

    None means "not certainly valid": UNKNOWN, an IPv6 address with a
    dotted tail, an error, a prefix.  _scan_v1 then decides, byte by byte,
    with the offsets and ``needed`` it always reports; this pass accepts
    only lines the scanner accepts, with the same result.
    """
    # The fields are read in order, each bounded by the first 107 bytes;
    # no field may hold a CR or LF, so the CRLF after the destination port
    # ends the line (no search for the LF first).
    cdef Py_ssize_t limit = n if n < V1_MAX else V1_MAX
    cdef Py_ssize_t end, p
    cdef bint v6
    cdef long sport, dport
    cdef unsigned char addr[32]
    cdef ProxyHeader h
    if limit <= V1_TCP_START:
        return None
    if memcmp(b, _V1_TCP_HEAD, V1_TCP_START - 2) != 0 or b[V1_TCP_START - 1] != 0x20:
        return None
    if b[V1_TCP_START - 2] == V1_4:
        v6 = False
        p = _quad(b, V1_TCP_START, limit, &addr[0])
        if p < 0 or b[p] != 0x20:
            return None
        p = _quad(b, p + 1, limit, &addr[16])
    elif b[V1_TCP_START - 2] == V1_6:
        v6 = True
        p = _ipv6(b, V1_TCP_START, limit, &addr[0])
        if p < 0 or b[p] != 0x20:
            return None
        p = _ipv6(b, p + 1, limit, &addr[16])
    else:
        return None
    if p < 0 or b[p] != 0x20:
        return None
    p = _port(b, p + 1, limit, &sport)
    if p < 0 or b[p] != 0x20:
        return None
    p = _port(b, p + 1, limit, &dport)
    if p < 0 or p + 1 >= limit or b[p] != 0x0D or b[p + 1] != 0x0A:
        return None
    end = p  # the CR
    h = ProxyHeader.__new__(ProxyHeader)
    h._version = 1
    h._command = CMD_PROXY
    h._length = end + 2
    h._protocol = PROTO_STREAM
    h._has_ip = True
    h._v6 = v6
    h._family = F_INET6 if v6 else F_INET
    h._sport = <uint16_t>sport
    h._dport = <uint16_t>dport
    if v6:
        memcpy(h._addr, addr, 32)
    else:
        memcpy(&h._addr[0], &addr[0], 4)
        memcpy(&h._addr[16], &addr[16], 4)
    return h


cdef inline Py_ssize_t _quad(const unsigned char *b, Py_ssize_t p, Py_ssize_t limit,
                             unsigned char *out) noexcept nogil:
    # Four decimal octets without leading zeros, read from b[p:limit];
    # returns the offset after them (where a byte is left to read), or -1.
    cdef const unsigned char *after = pp_parse_ipv4(b + p, b + limit, out)
    return -1 if after == NULL or after - b >= limit else after - b


cdef inline Py_ssize_t _port(const unsigned char *b, Py_ssize_t p, Py_ssize_t end,
                             long *out) noexcept nogil:
    # One to five digits, no leading zero, at most 65535, and a byte after
    # them before end: the loop only reads digits (six at most, so the value
    # cannot overflow), and the checks come once, after it.
    cdef Py_ssize_t start = p
    cdef Py_ssize_t stop = end if end - p < V1_PORT_SCAN else p + V1_PORT_SCAN
    cdef long value = 0
    cdef unsigned int digit
    while p < stop:
        digit = b[p] - 0x30
        if digit > 9:
            break
        value = value * 10 + digit
        p += 1
    if (p == start or p >= end or p - start > 5 or (b[start] == 0x30 and p - start > 1)
            or value > 0xFFFF):
        return -1
    out[0] = value
    return p


cdef inline Py_ssize_t _ipv6(const unsigned char *b, Py_ssize_t p, Py_ssize_t end,
                             unsigned char *out) noexcept nogil:
    # Hex groups with at most one "::" (standing for one group or more) and
    # no dotted tail; returns the offset after the address, or -1.
    cdef int groups[8]
    cdef int count = 0, gap = -1, value, digits, k, h
    if p + 1 < end and b[p] == 0x3A:
        if b[p + 1] != 0x3A:
            return -1
        gap = 0
        p += 2
        if p < end and b[p] == 0x20:
            memset(out, 0, 16)
            return p
    while True:
        value = 0
        digits = 0
        while p < end and digits < 5:
            h = _hex_digit(b[p])
            if h < 0:
                break
            value = (value << 4) | h
            digits += 1
            p += 1
        if digits == 0 or digits > 4 or count == 8:
            return -1
        groups[count] = value
        count += 1
        if p >= end:
            return -1
        if b[p] == 0x20:
            break
        if b[p] != 0x3A:
            return -1
        p += 1
        if p < end and b[p] == 0x3A:
            if gap >= 0:
                return -1
            gap = count
            p += 1
            if p < end and b[p] == 0x20:
                break
    if gap < 0:
        if count != 8:
            return -1
    elif count > 7:
        return -1
    memset(out, 0, 16)
    for k in range(count):
        h = k if gap < 0 or k < gap else k + 8 - count
        out[2 * h] = <unsigned char>(groups[k] >> 8)
        out[2 * h + 1] = <unsigned char>groups[k]
    return p


cdef inline int _hex_digit(unsigned char c) noexcept nogil:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    if 0x61 <= c <= 0x66:
        return c - 0x61 + 10
    return -1


cdef object _v1_result(const unsigned char *b, Py_ssize_t length, bint v6,
                       Py_ssize_t *spans, long *ports):
    cdef ProxyHeader h = ProxyHeader.__new__(ProxyHeader)
    h._version = 1
    h._command = CMD_PROXY
    h._length = length
    if b[6] == V1_U:  # UNKNOWN: addresses, if any, are ignored
        return h
    h._protocol = PROTO_STREAM
    h._has_ip = True
    h._v6 = v6
    h._sport = <uint16_t>ports[0]
    h._dport = <uint16_t>ports[1]
    if v6:
        h._family = F_INET6
        _pack_ipv6(b + spans[0], spans[1] - spans[0], &h._addr[0])
        _pack_ipv6(b + spans[2], spans[3] - spans[2], &h._addr[16])
    else:
        h._family = F_INET
        _pack_ipv4(b + spans[0], spans[1] - spans[0], &h._addr[0])
        _pack_ipv4(b + spans[2], spans[3] - spans[2], &h._addr[16])
    return h


cdef inline void _pack_ipv4(const unsigned char *s, Py_ssize_t n, unsigned char *out) noexcept nogil:
    # The text was validated by the scanner: octets of decimal digits and dots.
    cdef Py_ssize_t i
    cdef int k = 0, value = 0
    for i in range(n):
        if s[i] == 0x2E:
            out[k] = <unsigned char>value
            k += 1
            value = 0
        else:
            value = value * 10 + s[i] - 0x30
    out[k] = <unsigned char>value


cdef inline int _hex_value(unsigned char c) noexcept nogil:
    if c <= 0x39:
        return c - 0x30
    return (c | 0x20) - 0x61 + 10


cdef void _pack_ipv6(const unsigned char *s, Py_ssize_t n, unsigned char *out) noexcept nogil:
    # The text was validated by the scanner; expand '::' and a dotted tail.
    cdef unsigned char tmp[16]
    cdef int tp = 0, colonp = -1, value = 0, xd = 0, k
    cdef Py_ssize_t i = 0, tok = 0
    memset(tmp, 0, 16)
    if s[0] == 0x3A:
        i = 1
    tok = i
    while i < n:
        if s[i] == 0x3A:
            tok = i + 1
            if xd == 0:
                colonp = tp
            else:
                tmp[tp] = <unsigned char>(value >> 8)
                tmp[tp + 1] = <unsigned char>value
                tp += 2
                xd = 0
                value = 0
        elif s[i] == 0x2E:
            _pack_ipv4(s + tok, n - tok, &tmp[tp])
            tp += 4
            xd = 0
            break
        else:
            value = (value << 4) | _hex_value(s[i])
            xd += 1
        i += 1
    if xd:
        tmp[tp] = <unsigned char>(value >> 8)
        tmp[tp + 1] = <unsigned char>value
        tp += 2
    if colonp >= 0:
        k = tp - colonp
        memcpy(out, tmp, colonp)
        memset(out + colonp, 0, 16 - k - colonp)
        memcpy(out + 16 - k, tmp + colonp, k)
    else:
        memcpy(out, tmp, 16)
