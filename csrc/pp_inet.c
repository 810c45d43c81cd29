/* Address formatting without inet_ntop, whose output varies by platform. */
#include "pp_inet.h"

/* Writes the decimal text of an octet; returns the new end. */
static char *pp_put_octet(char *p, unsigned int v)
{
    if (v >= 100) {
        *p++ = (char)('0' + v / 100);
        v %= 100;
        *p++ = (char)('0' + v / 10);
    } else if (v >= 10) {
        *p++ = (char)('0' + v / 10);
    }
    *p++ = (char)('0' + v % 10);
    return p;
}

static char *pp_put_dotted(char *p, const unsigned char a[4])
{
    p = pp_put_octet(p, a[0]);
    *p++ = '.';
    p = pp_put_octet(p, a[1]);
    *p++ = '.';
    p = pp_put_octet(p, a[2]);
    *p++ = '.';
    return pp_put_octet(p, a[3]);
}

int pp_format_ipv4(const unsigned char a[4], char *out)
{
    char *end = pp_put_dotted(out, a);
    *end = '\0';
    return (int)(end - out);
}

/* Lowercase hex without leading zeros (RFC 5952 section 4.1 and 4.3). */
static char *pp_put_group(char *p, unsigned int v)
{
    static const char digits[] = "0123456789abcdef";
    int shift = 12;

    while (shift > 0 && (v >> shift) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        *p++ = digits[(v >> shift) & 0xF];
    return p;
}

int pp_format_ipv6(const unsigned char a[16], char *out)
{
    unsigned int g[8];
    int i, best = -1, best_len = 1, run = -1;
    char *p = out;

    for (i = 0; i < 8; i++)
        g[i] = (unsigned int)a[2 * i] << 8 | a[2 * i + 1];

    /* ::ffff:0:0/96 keeps its dotted tail, as Python 3.13's ipaddress does;
     * IPv4-compatible (::/96) addresses are deprecated and stay hex. */
    if (g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 &&
        g[5] == 0xFFFF) {
        static const char prefix[] = "::ffff:";
        for (i = 0; prefix[i]; i++)
            *p++ = prefix[i];
        p = pp_put_dotted(p, a + 12);
        *p = '\0';
        return (int)(p - out);
    }

    /* Longest run of zero groups; best_len starts at 1 so a lone zero group
     * is never compressed, and ">" keeps the first run on a tie. */
    for (i = 0; i < 8; i++) {
        if (g[i] != 0) {
            run = -1;
            continue;
        }
        if (run < 0)
            run = i;
        if (i - run + 1 > best_len) {
            best = run;
            best_len = i - run + 1;
        }
    }

    for (i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            *p++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len)
            *p++ = ':';
        p = pp_put_group(p, g[i]);
    }
    *p = '\0';
    return (int)(p - out);
}
