/* Escape attempts run inside a berth step (tests/it/sandbox_escapes.rs).
 * Each argument names one attempt; for each the probe prints
 * `NAME=ok` when the attempt succeeded or `NAME=errno:N` when it failed.
 * Built with `cc -static`, so it runs in a root with nothing but itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>

static long result(long rc) { return rc < 0 ? -errno : rc; }

static long write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -errno;
    long rc = write(fd, text, strlen(text));
    long saved = rc < 0 ? -errno : 0;
    close(fd);
    return saved;
}

static long clone_newuser(void) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid < 0) return -errno;
    waitpid(pid, 0, 0);
    return 0;
}

static long device_node(void) {
    unlink("/tmp/probe-sda");
    if (mknod("/tmp/probe-sda", S_IFBLK | 0600, makedev(8, 0)) < 0) return -errno;
    int fd = open("/tmp/probe-sda", O_RDONLY);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

static long read_kcore(void) {
    int fd = open("/proc/kcore", O_RDONLY);
    if (fd < 0) return -errno;
    char byte;
    long rc = read(fd, &byte, 1);
    close(fd);
    if (rc < 0) return -errno;
    return rc == 0 ? -ENODATA : 0; /* masked: reads as empty */
}

static long attempt(const char *name) {
    if (!strcmp(name, "io_uring_setup")) return result(syscall(SYS_io_uring_setup, 1, calloc(1, 120)));
    if (!strcmp(name, "io_uring_enter")) return result(syscall(SYS_io_uring_enter, 0, 0, 0, 0, 0, 0));
    if (!strcmp(name, "io_uring_register")) return result(syscall(SYS_io_uring_register, 0, 0, 0, 0));
    if (!strcmp(name, "keyctl")) return result(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    if (!strcmp(name, "add_key")) return result(syscall(SYS_add_key, "user", "probe", "x", 1, -3));
    if (!strcmp(name, "request_key")) return result(syscall(SYS_request_key, "user", "probe", 0, -3));
    if (!strcmp(name, "bpf")) return result(syscall(SYS_bpf, 0, calloc(1, 128), 128));
    if (!strcmp(name, "mount")) return result(mount("none", "/tmp", "tmpfs", 0, 0));
    if (!strcmp(name, "mount_cgroup")) return result(mount("cgroup", "/tmp", "cgroup", 0, "rdma"));
    if (!strcmp(name, "unshare_user")) return result(unshare(CLONE_NEWUSER));
    if (!strcmp(name, "unshare_mount")) return result(unshare(CLONE_NEWNS));
    if (!strcmp(name, "clone_newuser")) return clone_newuser();
    if (!strcmp(name, "setns")) {
        int fd = open("/proc/self/ns/net", O_RDONLY);
        return result(setns(fd, 0));
    }
    if (!strcmp(name, "ptrace")) return result(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0));
    if (!strcmp(name, "init_module")) return result(syscall(SYS_init_module, "", 0, ""));
    if (!strcmp(name, "finit_module")) return result(syscall(SYS_finit_module, 0, "", 0));
    if (!strcmp(name, "delete_module")) return result(syscall(SYS_delete_module, "probe", 0));
    if (!strcmp(name, "kexec_load")) return result(syscall(SYS_kexec_load, 0, 0, 0, 0));
    if (!strcmp(name, "reboot")) return result(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, 0));
    if (!strcmp(name, "clock_settime")) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return result(clock_settime(CLOCK_REALTIME, &now));
    }
    if (!strcmp(name, "settimeofday")) {
        struct timeval now;
        gettimeofday(&now, 0);
        return result(settimeofday(&now, 0));
    }
    if (!strcmp(name, "sethostname")) return result(sethostname("escaped", 7));
    if (!strcmp(name, "swapon")) return result(syscall(SYS_swapon, "/tmp", 0));
    if (!strcmp(name, "perf_event_open")) return result(syscall(SYS_perf_event_open, calloc(1, 128), 0, -1, -1, 0));
    if (!strcmp(name, "open_by_handle_at")) return result(syscall(SYS_open_by_handle_at, 0, calloc(1, 128), 0));
    if (!strcmp(name, "userfaultfd")) return result(syscall(SYS_userfaultfd, 0));
    if (!strcmp(name, "pivot_root")) return result(syscall(SYS_pivot_root, "/tmp", "/tmp"));
    if (!strcmp(name, "chroot_escape_setns_pid1")) {
        int fd = open("/proc/1/ns/mnt", O_RDONLY);
        return result(setns(fd, CLONE_NEWNS));
    }
    if (!strcmp(name, "raw_socket")) return result(socket(AF_PACKET, SOCK_RAW, 0));
    if (!strcmp(name, "vsock")) return result(socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    if (!strcmp(name, "device_node")) return device_node();
    if (!strcmp(name, "sysrq_trigger")) return write_file("/proc/sysrq-trigger", "h");
    if (!strcmp(name, "proc_sys")) return write_file("/proc/sys/kernel/hostname", "escaped");
    if (!strcmp(name, "sysfs_write")) return write_file("/sys/kernel/uevent_helper", "/tmp/x");
    if (!strcmp(name, "kcore")) return read_kcore();
    if (!strcmp(name, "personality")) return result(syscall(SYS_personality, 0x0040000 /* READ_IMPLIES_EXEC */));
    if (!strcmp(name, "fork")) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0) return -errno;
        waitpid(pid, 0, 0);
        return 0;
    }
    fprintf(stderr, "unknown attempt %s\n", name);
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long rc = attempt(argv[i]);
        if (rc < 0)
            printf("%s=errno:%ld\n", argv[i], -rc);
        else
            printf("%s=ok\n", argv[i]);
    }
    return 0;
}
