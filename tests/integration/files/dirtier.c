/* Copyright (c) mtd.containers contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * A workload for the pre-copy test (tests/integration/test_vm_precopy.py): one process, no fork, no
 * allocation after the start (so that its memory map, and CRIU's pre-dump chain, stay stable).
 *
 *   dirtier TOTAL_MIB REGION_MIB RATE
 *
 * maps TOTAL_MIB of anonymous memory and writes every page of it once, prints "ready", then writes RATE
 * pages per second (one byte per 4 KiB page, in 10 steps a second) cycling through the first REGION_MIB
 * of it, and prints a counter every second. The pages dirtied during t seconds are min(RATE * t, the
 * region's pages). The counter lives only in memory: after a restore it goes on from where it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096L

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: dirtier TOTAL_MIB REGION_MIB RATE\n");
        return 2;
    }
    long total = atol(argv[1]) * 1048576L, region = atol(argv[2]) * 1048576L, rate = atol(argv[3]);
    if (total <= 0 || region <= 0 || region > total || rate < 0) {
        fprintf(stderr, "dirtier: need TOTAL_MIB >= REGION_MIB > 0 and RATE >= 0\n");
        return 2;
    }
    char *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("dirtier: mmap");
        return 1;
    }
    memset(mem, 1, total);
    printf("ready %ld %ld %ld\n", total / 1048576L, region / 1048576L, rate);
    fflush(stdout);
    unsigned long counter = 0;
    long page = 0, pages = region / PAGE, step = rate / 10;
    struct timespec tick = {0, 100000000L};
    for (;;) {
        for (int s = 0; s < 10; s++) {
            for (long i = 0; i < step; i++) {
                mem[page * PAGE] = (char)(counter + i);
                page = (page + 1) % pages;
            }
            nanosleep(&tick, NULL);
        }
        counter++;
        printf("%lu\n", counter);
        fflush(stdout);
    }
}
