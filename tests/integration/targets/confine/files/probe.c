/*
 * Copyright (c) mtd.containers contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * mtd-confine probe: tries what a confined process must not be able to do, one action per call,
 * and prints "<action> OK" or "<action> ERR <ERRNO-NAME>". Built static (gcc -static) so that it
 * runs in any image. Used by tests/integration/targets/confine and bench/.
 *
 *   probe mount-cgroup DIR             mount -t cgroup -o memory none DIR
 *   probe mount-cgroup2 DIR            mount -t cgroup2 none DIR
 *   probe remount-rw PATH              mount -o remount,rw PATH (MS_REMOUNT)
 *   probe bind-remount-rw PATH         MS_REMOUNT|MS_BIND without MS_RDONLY (per-mount flag)
 *   probe newapi-cgroup2 DIR           fsopen("cgroup2") + fsconfig(CREATE) + fsmount + move_mount
 *   probe newapi-cgroup DIR            the same for cgroup v1 with the memory option
 *   probe fspick-rw PATH               fspick + fsconfig(rw) + fsconfig(RECONFIGURE)
 *   probe setattr-rw PATH              mount_setattr(PATH, clear MOUNT_ATTR_RDONLY)
 *   probe open-tree PATH DIR           open_tree(CLONE) + move_mount onto DIR
 *   probe umount PATH                  umount2(PATH, MNT_DETACH)
 *   probe write FILE VALUE             open(FILE, O_WRONLY) + write(VALUE)
 *   probe alloc MIB                    allocate and touch MIB mebibytes, then print OK
 *   probe hold MIB                     the same, then print OK and sleep until killed
 *   probe forks N                      fork up to N sleeping children; prints "forks <made> <ERRNO|-" then
 *                                      kills them
 *   probe setns-write NS FILE VALUE    open(NS) + setns(fd, 0) + write(FILE, VALUE): prints the step that
 *                                      failed ("setns-write:open ERR EACCES") or "setns-write OK"
 *   probe unshare-user                 unshare(CLONE_NEWUSER)
 *   probe vsock                        socket(AF_VSOCK, SOCK_STREAM, 0)
 *   probe userfaultfd                  userfaultfd(O_CLOEXEC)
 *   probe move-pages                   move_pages(0, 0, NULL, NULL, NULL, 0) (no page moves)
 *   probe finit-module                 finit_module(-1, "", 0) (EBADF when allowed: nothing is loaded)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_fspick
#define SYS_fspick 433
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define P_OPEN_TREE_CLONE 1
#define P_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define P_FSCONFIG_SET_FLAG 0
#define P_FSCONFIG_CMD_CREATE 6
#define P_FSCONFIG_CMD_RECONFIGURE 7
#define P_MOUNT_ATTR_RDONLY 0x1
#define P_AT_EMPTY_PATH 0x1000
#define P_AT_RECURSIVE 0x8000

struct p_mount_attr {
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

static const char *errname(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case ENODEV: return "ENODEV";
    case EEXIST: return "EEXIST";
    case EBADF: return "EBADF";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return strerror(e);
    }
}

static int report(const char *action, long rc)
{
    if (rc < 0)
        printf("%s ERR %s\n", action, errname(errno));
    else
        printf("%s OK\n", action);
    fflush(stdout);
    return 0;
}

static int newapi_mount(const char *action, const char *fstype, const char *option, const char *dir)
{
    int fs = (int)syscall(SYS_fsopen, fstype, 0);
    if (fs < 0)
        return report(action, -1);
    if (option && syscall(SYS_fsconfig, fs, P_FSCONFIG_SET_FLAG, option, NULL, 0) < 0)
        return report(action, -1);
    if (syscall(SYS_fsconfig, fs, P_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return report(action, -1);
    int mnt = (int)syscall(SYS_fsmount, fs, 0, 0);
    if (mnt < 0)
        return report(action, -1);
    return report(action, syscall(SYS_move_mount, mnt, "", AT_FDCWD, dir, P_MOVE_MOUNT_F_EMPTY_PATH));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: probe ACTION [ARG...]\n");
        return 2;
    }
    const char *a = argv[1];
    if (!strcmp(a, "mount-cgroup") && argc == 3)
        return report(a, mount("none", argv[2], "cgroup", 0, "memory"));
    if (!strcmp(a, "mount-cgroup2") && argc == 3)
        return report(a, mount("none", argv[2], "cgroup2", 0, NULL));
    if (!strcmp(a, "remount-rw") && argc == 3)
        return report(a, mount(NULL, argv[2], NULL, MS_REMOUNT, NULL));
    if (!strcmp(a, "bind-remount-rw") && argc == 3)
        return report(a, mount(NULL, argv[2], NULL, MS_REMOUNT | MS_BIND, NULL));
    if (!strcmp(a, "newapi-cgroup2") && argc == 3)
        return newapi_mount(a, "cgroup2", NULL, argv[2]);
    if (!strcmp(a, "newapi-cgroup") && argc == 3)
        return newapi_mount(a, "cgroup", "memory", argv[2]);
    if (!strcmp(a, "fspick-rw") && argc == 3) {
        int fs = (int)syscall(SYS_fspick, AT_FDCWD, argv[2], 0);
        if (fs < 0)
            return report(a, -1);
        if (syscall(SYS_fsconfig, fs, P_FSCONFIG_SET_FLAG, "rw", NULL, 0) < 0)
            return report(a, -1);
        return report(a, syscall(SYS_fsconfig, fs, P_FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0));
    }
    if (!strcmp(a, "setattr-rw") && argc == 3) {
        struct p_mount_attr attr = {0, P_MOUNT_ATTR_RDONLY, 0, 0};
        return report(a, syscall(SYS_mount_setattr, AT_FDCWD, argv[2], 0, &attr, sizeof(attr)));
    }
    if (!strcmp(a, "open-tree") && argc == 4) {
        int t = (int)syscall(SYS_open_tree, AT_FDCWD, argv[2], P_OPEN_TREE_CLONE);
        if (t < 0)
            return report(a, -1);
        return report(a, syscall(SYS_move_mount, t, "", AT_FDCWD, argv[3], P_MOVE_MOUNT_F_EMPTY_PATH));
    }
    if (!strcmp(a, "umount") && argc == 3)
        return report(a, umount2(argv[2], MNT_DETACH));
    if (!strcmp(a, "write") && argc == 4) {
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0)
            return report(a, -1);
        long rc = write(fd, argv[3], strlen(argv[3]));
        int saved = errno;
        close(fd);
        errno = saved;
        return report(a, rc);
    }
    if ((!strcmp(a, "alloc") || !strcmp(a, "hold")) && argc == 3) {
        size_t size = (size_t)atol(argv[2]) << 20;
        char *p = malloc(size);
        if (!p)
            return report(a, -1);
        for (size_t i = 0; i < size; i += 4096)
            p[i] = 1;
        report(a, 0);
        if (!strcmp(a, "hold"))
            for (;;)
                pause();
        return 0;
    }
    if (!strcmp(a, "forks") && argc == 3) {
        int wanted = atoi(argv[2]), made = 0, err = 0;
        pid_t *kids = calloc((size_t)wanted, sizeof(pid_t));
        for (; made < wanted; made++) {
            pid_t pid = fork();
            if (pid < 0) {
                err = errno;
                break;
            }
            if (pid == 0) {
                pause();
                _exit(0);
            }
            kids[made] = pid;
        }
        printf("forks %d %s\n", made, err ? errname(err) : "-");
        fflush(stdout);
        for (int i = 0; i < made; i++)
            kill(kids[i], SIGKILL);
        while (wait(NULL) > 0)
            ;
        return 0;
    }
    if (!strcmp(a, "setns-write") && argc == 5) {
        int ns = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (ns < 0)
            return report("setns-write:open", -1);
        if (setns(ns, 0) < 0)
            return report("setns-write:setns", -1);
        int fd = open(argv[3], O_WRONLY);
        if (fd < 0)
            return report("setns-write:open-file", -1);
        return report("setns-write", write(fd, argv[4], strlen(argv[4])));
    }
    if (!strcmp(a, "unshare-user") && argc == 2)
        return report(a, unshare(CLONE_NEWUSER));
    if (!strcmp(a, "vsock") && argc == 2)
        return report(a, socket(40, SOCK_STREAM, 0));
    if (!strcmp(a, "userfaultfd") && argc == 2)
        return report(a, syscall(SYS_userfaultfd, O_CLOEXEC));
    if (!strcmp(a, "move-pages") && argc == 2)
        return report(a, syscall(SYS_move_pages, 0, 0UL, NULL, NULL, NULL, 0));
    if (!strcmp(a, "finit-module") && argc == 2)
        return report(a, syscall(SYS_finit_module, -1, "", 0));
    fprintf(stderr, "probe: unknown action or wrong arguments: %s\n", a);
    return 2;
}
