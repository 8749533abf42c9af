/*
 * sha256.c — SHA-256 of a file, so a `slm cost` report names the exact model
 * file it measured (a prefix of the digest). The digest is OpenSSL's
 * (libcrypto, Debian's libssl-dev): a well-kept implementation rather than
 * one of our own; the file is streamed in 1 MiB reads.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "cost.h"

int slm_cli_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20), md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = f && ctx && buf && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    size_t n;
    while (ok && (n = fread(buf, 1, 1 << 20, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (f)
        fclose(f);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
