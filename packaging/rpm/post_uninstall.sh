# On erase ($1 = 0, not on upgrade): the package's own directories go when empty (this package cannot own
# them, see Cargo.toml); /etc/vmha goes only if the administrator left nothing in it.
if [ "$1" = 0 ]; then
    for d in /usr/lib/ocf/resource.d/vmha /usr/share/doc/vmha/examples/clusterpro /usr/share/doc/vmha/examples \
        /usr/share/doc/vmha /usr/share/licenses/vmha /etc/vmha; do
        rmdir "$d" 2>/dev/null || :
    done
fi
