# Shell helpers shared by the scripts under benches/ (sourced, not run).

# A loopback port nothing listens on.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
    done
}

# A process's resident set and its high-water mark, in kB.
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
# kB as "12.3 MB".
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
