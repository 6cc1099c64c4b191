# Shell functions the benchmark scripts share (sourced, not run):
# waiting for a quiet machine and putting a section into bench/REPORT.md.

# wait_for_quiet_machine NAME
# Other people compile on this 2-core machine, and a compile during a run
# moves the numbers far more than anything measured. Waits for 60 s in a row
# without rustc (checked every 15 s), for at most 20 minutes, then goes on
# anyway and says so. Sets `quiet_note` for the report's metadata.
wait_for_quiet_machine() {
    local name="$1" quiet=0 waited=0
    while [ "$quiet" -lt 5 ] && [ "$waited" -lt 1200 ]; do
        if pgrep -x rustc >/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
        [ "$quiet" -lt 5 ] || break
        sleep 15
        waited=$((waited + 15))
    done
    if [ "$quiet" -lt 5 ]; then
        echo "$name: the machine did not go quiet in 20 minutes; measuring anyway" >&2
        quiet_note="no (rustc still running after 20 minutes of waiting)"
    else
        quiet_note="yes (no rustc for 60 s before the start)"
    fi
}

# put_report_section NAME SECTION_FILE REPORT_FILE
# SECTION_FILE starts with `<!-- NAME:begin -->` and ends with
# `<!-- NAME:end -->`. It replaces the lines between (and including) those
# markers in REPORT_FILE, or is appended the first time; the rest of the
# report is left as it was.
put_report_section() {
    local name="$1" section="$2" report="$3" new
    touch "$report"
    new="$(mktemp)"
    awk -v section="$section" -v begin="<!-- $name:begin -->" -v end="<!-- $name:end -->" '
        $0 == begin { while ((getline line < section) > 0) print line; skip = 1; done = 1; next }
        $0 == end { skip = 0; next }
        !skip { print }
        END { if (!done) { print ""; while ((getline line < section) > 0) print line } }
    ' "$report" >"$new"
    cp "$new" "$report"
    rm -f "$new"
}

# report_commit
# The commit a report was measured at, with "+ uncommitted changes" when the
# tree differs from it (the report itself and build outputs aside).
report_commit() {
    local commit
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ "$commit" != unknown ] &&
        [ -n "$(git status --porcelain -- . ':!bench/REPORT.md' ':!bench/chart*.svg' ':!build' 2>/dev/null)" ]; then
        commit="$commit + uncommitted changes"
    fi
    echo "$commit"
}
