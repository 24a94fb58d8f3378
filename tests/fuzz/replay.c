/* Runs the fuzz target over every file of a corpus directory (part of the normal suite). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: replay CORPUS_DIR\n");
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        printf("SKIP: corpus %s not found\n", argv[1]);
        return 77;
    }
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = xasprintf("%s/%s", argv[1], de->d_name);
        uint8_t *data;
        size_t len;
        if (file_read_all(p, &data, &len) == 0) {
            LLVMFuzzerTestOneInput(data, len);
            free(data);
            n++;
        }
        free(p);
    }
    closedir(d);
    printf("replayed %d inputs without a crash\n", n);
    return n > 0 ? 0 : 1;
}
