# Shared settings of the scripts in this folder (sourced, not run).
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${EOMLAB_BUILD_DIR:-$repo_root/build}"
jobs="$(nproc 2>/dev/null || echo 2)"

# Open MPI refuses to run as root and to run more ranks than cores unless told; on a laptop or CI
# machine that is what we want.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1

configure_and_build() {
  echo "== configure ($build_dir, Release)"
  cmake -S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$build_dir/configure.log" 2>&1 || {
    cat "$build_dir/configure.log" >&2
    return 1
  }
  echo "== build (-j$jobs)"
  cmake --build "$build_dir" -j "$jobs"
}
