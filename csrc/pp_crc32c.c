/* CRC32C with run-time selection of a hardware implementation.
 *
 * The hardware paths are compiled with function-level target attributes so
 * the file builds with the compiler's baseline flags (no -msse4.2 or
 * -march=armv8-a+crc) and still runs on CPUs without the instructions.
 */
#include "pp_crc32c.h"

#include <string.h>

#if defined(_WIN32)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h> /* InitOnceExecuteOnce, IsProcessorFeaturePresent */
#else
#  include <pthread.h>
#endif

#define PP_CRC32C_POLY 0x82F63B78u /* Castagnoli, bit-reflected */

/* Which hardware path this build can try; none when forced to the table
 * (for tests) or on a compiler that lacks the intrinsics. */
#if !defined(PP_CRC32C_FORCE_TABLE) && \
    (defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER))
/* ARM64EC defines _M_X64 but has no SSE4.2 crc32 instructions. */
#  if (defined(__x86_64__) || defined(_M_X64)) && !defined(_M_ARM64EC)
#    define PP_HW_SSE42 1
#  elif (defined(__aarch64__) || defined(_M_ARM64)) && \
      (defined(__linux__) || defined(__APPLE__) || defined(_WIN32) || \
       defined(__FreeBSD__))
#    define PP_HW_ARMV8 1
#  endif
#endif

#if defined(PP_HW_SSE42)
#  include <nmmintrin.h>
#  if defined(_MSC_VER)
/* clang-cl too: <windows.h> already brought <intrin.h>, whose __cpuid
 * function clashes with the macro of the same name in <cpuid.h>. */
#    include <intrin.h>
#  else
#    include <cpuid.h>
#  endif
#  if defined(__GNUC__) || defined(__clang__)
#    define PP_TARGET_SSE42 __attribute__((target("sse4.2")))
#  else
#    define PP_TARGET_SSE42 /* MSVC emits any intrinsic without flags */
#  endif
#endif

#if defined(PP_HW_ARMV8)
#  if defined(_MSC_VER) && !defined(__clang__)
#    include <intrin.h> /* pulls in <arm64intr.h> with __crc32c* */
#  else
#    include <arm_acle.h>
#  endif
#  if defined(__ARM_FEATURE_CRC32) || (defined(_MSC_VER) && !defined(__clang__))
#    define PP_TARGET_CRC /* already enabled for the whole file */
#  elif defined(__clang__)
#    define PP_TARGET_CRC __attribute__((target("crc"))) /* rejects "+crc" */
#  else
#    define PP_TARGET_CRC __attribute__((target("+crc")))
#  endif
/* Older clang (seen with 14) declares the ACLE names only when the whole
 * unit targets +crc, so under a function attribute call the builtins. */
#  if defined(__clang__) && !defined(__ARM_FEATURE_CRC32)
#    define PP_CRC32CD __builtin_arm_crc32cd
#    define PP_CRC32CB __builtin_arm_crc32cb
#  else
#    define PP_CRC32CD __crc32cd
#    define PP_CRC32CB __crc32cb
#  endif
#  if defined(__linux__) || defined(__FreeBSD__)
#    include <sys/auxv.h>
#    ifndef HWCAP_CRC32
#      define HWCAP_CRC32 (1 << 7) /* same bit on Linux and FreeBSD */
#    endif
#  elif defined(_WIN32) && !defined(PF_ARM_V8_CRC32_INSTRUCTIONS_AVAILABLE)
#    define PF_ARM_V8_CRC32_INSTRUCTIONS_AVAILABLE 31 /* older SDKs */
#  endif
#endif

typedef uint32_t (*pp_crc_fn)(uint32_t, const unsigned char *, size_t);

/* ---- portable slicing-by-8 ---------------------------------------------- */

/* pp_table[k][b] is the register after byte b followed by k zero bytes. */
static uint32_t pp_table[8][256];

static void pp_table_init(void)
{
    uint32_t n, c;
    int k;

    for (n = 0; n < 256; n++) {
        c = n;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (PP_CRC32C_POLY & (0u - (c & 1u)));
        pp_table[0][n] = c;
    }
    for (n = 0; n < 256; n++) {
        c = pp_table[0][n];
        for (k = 1; k < 8; k++) {
            c = (c >> 8) ^ pp_table[0][c & 0xFF];
            pp_table[k][n] = c;
        }
    }
}

/* Assembled from bytes so it is alignment- and endianness-neutral; compilers
 * turn it into a single load on little-endian targets. */
static uint32_t pp_load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t pp_crc32c_table(uint32_t c, const unsigned char *p, size_t n)
{
    while (n >= 8) {
        c ^= pp_load_le32(p);
        c = pp_table[7][c & 0xFF] ^ pp_table[6][(c >> 8) & 0xFF] ^
            pp_table[5][(c >> 16) & 0xFF] ^ pp_table[4][c >> 24] ^
            pp_table[3][p[4]] ^ pp_table[2][p[5]] ^ pp_table[1][p[6]] ^
            pp_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ pp_table[0][(c ^ *p++) & 0xFF];
    return c;
}

/* ---- x86-64 SSE4.2 ------------------------------------------------------ */

#if defined(PP_HW_SSE42)
static int pp_cpu_has_sse42(void)
{
#  if defined(_MSC_VER)
    int regs[4];
    __cpuid(regs, 1);
    return (regs[2] >> 20) & 1;
#  else
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    return (ecx >> 20) & 1;
#  endif
}

PP_TARGET_SSE42
static uint32_t pp_crc32c_sse42(uint32_t c, const unsigned char *p, size_t n)
{
    uint64_t c64 = c, word;

    while (n >= 8) {
        memcpy(&word, p, 8); /* p may be unaligned */
        c64 = _mm_crc32_u64(c64, word);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

/* ---- aarch64 CRC -------------------------------------------------------- */

#if defined(PP_HW_ARMV8)
static int pp_cpu_has_armv8_crc(void)
{
#  if defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has it */
#  elif defined(_WIN32)
    return IsProcessorFeaturePresent(PF_ARM_V8_CRC32_INSTRUCTIONS_AVAILABLE) != 0;
#  elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#  else /* FreeBSD */
    unsigned long hwcap = 0;
    if (elf_aux_info(AT_HWCAP, &hwcap, (int)sizeof(hwcap)) != 0)
        return 0;
    return (hwcap & HWCAP_CRC32) != 0;
#  endif
}

PP_TARGET_CRC
static uint32_t pp_crc32c_armv8(uint32_t c, const unsigned char *p, size_t n)
{
    uint64_t word;

    while (n >= 8) {
        memcpy(&word, p, 8); /* p may be unaligned */
        c = PP_CRC32CD(c, word);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = PP_CRC32CB(c, *p++);
    return c;
}
#endif

/* ---- dispatch ----------------------------------------------------------- */

/* Written only inside the one-time initialiser below.  pthread_once and
 * InitOnceExecuteOnce make everything the initialiser wrote (including the
 * table) visible to every thread that returns from them, so plain reads
 * afterwards are safe even on a free-threaded Python build, and the table is
 * built exactly once. */
static pp_crc_fn pp_impl_fn;
static const char *pp_impl_name;

static void pp_resolve(void)
{
#if defined(PP_HW_SSE42)
    if (pp_cpu_has_sse42()) {
        pp_impl_fn = pp_crc32c_sse42;
        pp_impl_name = "sse4.2";
        return;
    }
#elif defined(PP_HW_ARMV8)
    if (pp_cpu_has_armv8_crc()) {
        pp_impl_fn = pp_crc32c_armv8;
        pp_impl_name = "armv8";
        return;
    }
#endif
    pp_table_init(); /* only needed, so only paid for, without hardware */
    pp_impl_fn = pp_crc32c_table;
    pp_impl_name = "table";
}

#if defined(_WIN32)
static INIT_ONCE pp_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK pp_resolve_cb(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once;
    (void)param;
    (void)ctx;
    pp_resolve();
    return TRUE;
}

static void pp_dispatch_init(void)
{
    InitOnceExecuteOnce(&pp_once, pp_resolve_cb, NULL, NULL);
}
#else
static pthread_once_t pp_once = PTHREAD_ONCE_INIT;

static void pp_dispatch_init(void)
{
    pthread_once(&pp_once, pp_resolve);
}
#endif

uint32_t pp_crc32c(uint32_t crc, const unsigned char *buf, size_t len)
{
    pp_dispatch_init(); /* after the first call just a flag check */
    return ~pp_impl_fn(~crc, buf, len);
}

const char *pp_crc32c_impl(void)
{
    pp_dispatch_init();
    return pp_impl_name;
}
