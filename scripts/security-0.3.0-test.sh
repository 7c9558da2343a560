#!/usr/bin/env bash
# The security regression tests of 0.3.0's holes (harness/tests/security/, numbered 1 to 13b) run against
# 0.3.0's own build, where each must fail: "14 red on 0.3.0" (docs/reliability.md, README.md, CHANGELOG.md)
# is measured here, not remembered. 0.3.0's library is the upgrade test's (scripts/releases.sh builds it
# once), its install script the frozen sql/orch_lease--0.3.0.sql; every test database is created with
# CREATE EXTENSION orch_lease VERSION '0.3.0' (ORCH_LEASE_EXTENSION_VERSION, harness/tests/common). Its own
# throwaway cluster; the current library is put back on exit. Holds /tmp/orch_lease.lock (it swaps the
# library in PostgreSQL's directory). Each test's first violation is printed, so that a red for the wrong
# reason can be seen.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=security-0.3.0
# The tests of the 0.3.0 holes, in the order of their numbers (1 … 12, 13a, 13b), each as module::name (the
# module is the file of harness/tests/security/ that holds it).
TESTS=(
    rights::the_bypass_guard_lends_the_extension_owner_s_rights_to_nobody
    history::takeovers_of_leases_with_huge_control_character_names_are_announced_cut
    keys::one_task_is_one_lease_however_its_id_is_spelled
    transactions::a_cas_that_times_out_on_the_row_lock_says_retry_and_keeps_the_lease
    rights::another_actor_s_token_is_neither_readable_nor_usable
    history::a_dumped_and_restored_database_grants_new_larger_tokens
    rights::an_actor_recovers_its_own_instance_and_no_other
    stages::a_commit_with_the_kill_switch_off_also_ends_the_lease
    stages::a_terminal_stage_is_left_by_no_cas
    rights::register_task_table_wants_the_owner_and_a_unique_id
    transactions::recover_and_reap_refuse_a_transaction_snapshot
    keys::a_misspelt_orch_lease_setting_is_an_error
    transactions::a_serialization_failure_inside_acquire_is_retry_not_busy
    transactions::a_cas_on_a_row_updated_after_the_snapshot_is_retry
)
for name in "${TESTS[@]}"; do
    file=harness/tests/security/${name%%::*}.rs
    grep -q "^fn ${name#*::}()" "$file" || fail "$file has no test ${name#*::}"
done

lock_take
scripts/releases.sh 0.3.0
cargo test --quiet --no-run --manifest-path harness/Cargo.toml --test security
mkdir -p target/releases
cp "$("$PG_CONFIG" --pkglibdir)/orch_lease.so" target/releases/current-security.so
trap 'use_library target/releases/current-security.so; cluster_stop' EXIT
privileged cp sql/orch_lease--0.3.0.sql "$("$PG_CONFIG" --sharedir)/extension/"
use_library target/releases/0.3.0/orch_lease.so
cluster_start
check "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'orch_lease' AND version = '0.3.0'" 1 \
    "0.3.0's install script is not available"

out=target/security-0.3.0.txt
status=0
ORCH_LEASE_EXTENSION_VERSION=0.3.0 cargo test --manifest-path harness/Cargo.toml --test security -- \
    --exact --test-threads=1 "${TESTS[@]}" >"$out" 2>&1 || status=$?
red=0 green=()
for name in "${TESTS[@]}"; do
    case $(grep -E "^test $name \.\.\. " "$out" | sed 's/.* \.\.\. //') in
        FAILED)
            red=$((red + 1))
            # The first thing the test found wrong on 0.3.0 (a Verdict's first line, or the panic).
            reason=$(awk -v t="---- $name stdout ----" '
                $0 == t { on = 1; next }
                on && /^---- / { exit }
                on && /^  - / { print; found = 1; exit }
                on && after_panic && fallback == "" { fallback = $0 }
                on && /panicked at/ { after_panic = 1 }
                END { if (!found && fallback != "") print fallback }' "$out")
            reason=${reason#  - }
            echo "red on 0.3.0: $name: ${reason:0:200}" ;;
        ok) green+=("$name") ;;
        *) cat "$out"; fail "$name did not run (cargo test exited $status)" ;;
    esac
done
[ ${#green[@]} = 0 ] || fail "passed on 0.3.0, so they guard nothing 0.3.0 got wrong: ${green[*]}"
echo "security-0.3.0: $red of ${#TESTS[@]} security regression tests red on 0.3.0's own build"
echo "security-0.3.0: $red passed, 0 failed"
