# The state directory (also declared in tmpfiles.d for later boots); let
# systemd see the new units. Nothing is enabled or started.
mkdir -p /var/lib/autoblock
chmod 0700 /var/lib/autoblock
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
