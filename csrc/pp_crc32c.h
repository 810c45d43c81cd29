/* CRC32C (Castagnoli), as used by the PROXY protocol v2 PP2_TYPE_CRC32C TLV.
 *
 * The implementation is picked at first use: SSE4.2 on x86-64, the ARMv8 CRC
 * instructions on aarch64, otherwise a portable slicing-by-8 table.  Defining
 * PP_CRC32C_FORCE_TABLE when compiling pp_crc32c.c always selects the table,
 * so tests can compare it with the hardware path.
 */
#ifndef PP_CRC32C_H
#define PP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same calling convention as zlib's crc32(): start with crc = 0 and pass the
 * previous result to continue over more data; the pre- and post-inversion
 * are done inside.  pp_crc32c(0, "123456789", 9) == 0xE3069283.  buf may be
 * NULL when len is 0. */
uint32_t pp_crc32c(uint32_t crc, const unsigned char *buf, size_t len);

/* "sse4.2", "armv8" or "table": the implementation pp_crc32c() uses. */
const char *pp_crc32c_impl(void);

#ifdef __cplusplus
}
#endif

#endif /* PP_CRC32C_H */
