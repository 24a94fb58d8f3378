/* qcow2 compressed clusters: raw deflate (zlib, 4 KiB window as QEMU) and zstd. */
#include "block/qcow2.h"
#include "base/log.h"
#include <errno.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

static int zlib_decompress(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
    z_stream z = {0};
    if (inflateInit2(&z, -12) != Z_OK)
        return -ENOMEM;
    z.next_in = (uint8_t *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int r = inflate(&z, Z_FINISH);
    size_t got = outlen - z.avail_out;
    inflateEnd(&z);
    /* The stored size is rounded to sectors, so trailing bytes are normal; a short result
     * is not. */
    if ((r != Z_STREAM_END && r != Z_BUF_ERROR && r != Z_OK) || got != outlen)
        return -EIO;
    return 0;
}

static int zstd_decompress(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return -ENOMEM;
    ZSTD_inBuffer ib = {in, inlen, 0};
    ZSTD_outBuffer ob = {out, outlen, 0};
    int ret = 0;
    while (ob.pos < ob.size) {
        size_t prev_in = ib.pos, prev_out = ob.pos;
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            ret = -EIO;
            break;
        }
        if (r == 0 && ob.pos < ob.size) { /* frame ended early */
            ret = -EIO;
            break;
        }
        if (ib.pos == prev_in && ob.pos == prev_out) { /* no progress: truncated input */
            ret = -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    return ret;
}

int qcow2_decompress(struct qcow2 *s, const uint8_t *in, size_t inlen, uint8_t *out,
                     size_t outlen)
{
    if (s->compression_type == 1)
        return zstd_decompress(in, inlen, out, outlen);
    return zlib_decompress(in, inlen, out, outlen);
}

long qcow2_compress(struct qcow2 *s, const uint8_t *in, size_t inlen, uint8_t *out,
                    size_t outlen)
{
    if (s->compression_type == 1) {
        size_t r = ZSTD_compress(out, outlen, in, inlen, 1);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
        return (long)r;
    }
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (uint8_t *)in;
    z.avail_in = (uInt)inlen;
    z.next_out = out;
    z.avail_out = (uInt)outlen;
    int r = deflate(&z, Z_FINISH);
    long n = (long)(outlen - z.avail_out);
    deflateEnd(&z);
    if (r != Z_STREAM_END)
        return -ENOSPC;
    return n;
}
