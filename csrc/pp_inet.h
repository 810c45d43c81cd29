/* Address text: formatting that gives the same text on every platform, and
 * the strict dotted-quad reader of v1 lines.
 *
 * inet_ntop is not the same on every platform (glibc, for one, writes the
 * IPv4-compatible ::102:304 as "::1.2.3.4"), so the parsers format addresses
 * here.  The IPv6 text is RFC 5952 and equals Python 3.13's ipaddress output
 * and pyproxyproto/_inet.py's.
 */
#ifndef PP_INET_H
#define PP_INET_H

#ifdef __cplusplus
extern "C" {
#endif

/* Longest text plus the NUL: "255.255.255.255" and
 * "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (the latter longer than
 * anything actually produced, as in <netinet/in.h>). */
#define PP_INET_ADDRSTRLEN 16
#define PP_INET6_ADDRSTRLEN 46

/* Dotted decimal.  Writes the text and a NUL into out, which must hold
 * PP_INET_ADDRSTRLEN bytes; returns the text length (without the NUL). */
int pp_format_ipv4(const unsigned char a[4], char *out);

/* RFC 5952: lowercase hex without leading zeros, the longest run (the first
 * on a tie) of two or more zero groups as "::", and IPv4-mapped addresses
 * (::ffff:0:0/96) as "::ffff:" plus dotted decimal.  Writes the text and a
 * NUL into out, which must hold PP_INET6_ADDRSTRLEN bytes; returns the text
 * length (without the NUL). */
int pp_format_ipv6(const unsigned char a[16], char *out);

/* Reads a dotted-quad IPv4 address at s as a v1 line carries it: four
 * octets of one to three decimal digits, no leading zeros, each at most 255.
 * May read every byte before end (s up to end - 1, and three bytes from the
 * start of each octet, so end must leave room for them; a caller passes the
 * end of what it may read, not of the address).  Returns the first byte
 * after the address, or NULL when s does not start with one or end leaves
 * too little room; out then holds garbage. */
const unsigned char *pp_parse_ipv4(const unsigned char *s, const unsigned char *end,
                                   unsigned char out[4]);

#ifdef __cplusplus
}
#endif

#endif /* PP_INET_H */
