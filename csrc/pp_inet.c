/* Address text: formatting without inet_ntop, whose output varies by
 * platform, and the strict dotted-quad reader of v1 lines. */
#include <stddef.h>

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

/* One octet at s: one to three digits, no leading zero, at most 255.
 * Reads s[0..2] whatever the digits are and computes the value with
 * arithmetic alone: an octet's length changes from one address to the
 * next, and a loop's exit, or a select the compiler turns into a branch,
 * would be mispredicted about as often.  Returns the number of digits, or
 * 0 when no octet starts at s. */
static int pp_octet(const unsigned char *s, unsigned char *out)
{
    unsigned int d0 = (unsigned int)s[0] - '0';
    unsigned int d1 = (unsigned int)s[1] - '0';
    unsigned int d2 = (unsigned int)s[2] - '0';
    unsigned int one = d0 < 10;
    unsigned int two = one & (d1 < 10);
    unsigned int three = two & (d2 < 10);
    /* d0, 10 d0 + d1 or 100 d0 + 10 d1 + d2; a digit not in the octet is
     * multiplied by zero (unsigned arithmetic wraps, so garbage is harmless). */
    unsigned int v = d0 * (1 + 9 * two + 90 * three) + d1 * (two + 9 * three) + d2 * three;
    unsigned int bad = (one ^ 1) | (v > 255) | ((d0 == 0) & two);

    *out = (unsigned char)v;
    return bad ? 0 : (int)(one + two + three);
}

const unsigned char *pp_parse_ipv4(const unsigned char *s, const unsigned char *end,
                                   unsigned char out[4])
{
    int k, n;

    for (k = 0; k < 4; k++) {
        if (k) {
            if (s >= end || *s != '.')
                return NULL;
            s++;
        }
        if (end - s < 3)
            return NULL;
        n = pp_octet(s, &out[k]);
        if (n == 0)
            return NULL;
        s += n;
    }
    return s;
}
