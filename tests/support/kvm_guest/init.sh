#!/bin/busybox sh
# /init of the test guest (PID 1). Loads the virtio modules, then serves a line-based control
# protocol on the second serial port (ttyS1); ttyS0 is the kernel console.
#
# Request:  "<id> <command> [argument...]\n"
# Answer:   "@@HVB-BEGIN <id>@@\n" <output lines> "@@HVB-END <id> <status>@@\n"
#
# Commands: ping | meminfo | hold MIB | tmpfs MIB | release | status | dmesg | run SHELL-TEXT

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /fill
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Memory the guest cannot give back: files in a tmpfs (no swap in this guest). The size is
# only a cap, well above any guest size the tests use.
mount -t tmpfs -o size=64g,mode=0755 fill /fill

for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || echo "hvb: insmod $m failed"
done

CTL=/dev/ttyS1
stty -F "$CTL" raw -echo
exec 3<>"$CTL"

holders=""   # "pid:mib pid:mib ..." of the processes started by `hold`
seq=0

alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

do_hold() {
    mib=$1
    seq=$((seq + 1))
    ready=/run/hold.$seq.ready
    fifo=/run/hold.$seq.fifo
    mkfifo "$fifo"
    # busybox awk copies a string on every assignment: N assignments of a 1 MiB string give N
    # separate, written (so resident) 1 MiB heap blocks of ordinary anonymous memory, which
    # the OOM killer may reclaim by killing this process. It then blocks forever opening a
    # FIFO nobody writes to, so killing it leaves nothing behind.
    awk -v n="$mib" -v ready="$ready" -v fifo="$fifo" 'BEGIN {
        c = "x"; while (length(c) < 1048576) c = c c
        for (i = 0; i < n; i++) a[i] = c
        printf "" > ready; close(ready)
        getline z < fifo
    }' </dev/null >/dev/null 2>&1 &
    pid=$!
    while [ ! -e "$ready" ] && alive "$pid"; do
        usleep 50000
    done
    if [ -e "$ready" ]; then
        holders="$holders $pid:$mib"
        echo "pid=$pid mib=$mib"
        return 0
    fi
    echo "hold: the process died before holding $mib MiB"
    return 1
}

do_tmpfs() {
    mib=$1
    seq=$((seq + 1))
    dd if=/dev/zero of="/fill/f.$seq" bs=1048576 count="$mib" 2>&1
}

do_release() {
    for h in $holders; do
        kill -9 "${h%%:*}" 2>/dev/null
    done
    for h in $holders; do
        wait "${h%%:*}" 2>/dev/null
    done
    holders=""
    rm -f /fill/* /run/hold.*
    echo released
}

do_status() {
    n=0
    pids=""
    for h in $holders; do
        if alive "${h%%:*}"; then
            n=$((n + ${h##*:}))
            pids="$pids ${h%%:*}"
        fi
    done
    echo "hold_mib=$n"
    echo "hold_pids=${pids# }"
    echo "tmpfs_kib=$(du -sk /fill | cut -f1)"
}

echo "hvb: control loop ready on $CTL"
while :; do
    if ! read -r id cmd arg <&3; then
        sleep 1
        continue
    fi
    [ -n "$id" ] || continue
    echo "@@HVB-BEGIN $id@@" >&3
    case "$cmd" in
        ping) echo pong ;;
        meminfo) cat /proc/meminfo ;;
        hold) do_hold "$arg" ;;
        tmpfs) do_tmpfs "$arg" ;;
        release) do_release ;;
        status) do_status ;;
        dmesg) dmesg ;;
        run) eval "$arg" ;;
        *) echo "unknown command: $cmd"; false ;;
    esac >&3 2>&3 </dev/null
    echo "@@HVB-END $id $?@@" >&3
done
