# Makes /etc/vmha, where the settings and password files go, readable by root only. An existing one is
# left as the administrator set it. Nothing here reaches the network.
if [ ! -e /etc/vmha ]; then
    install -d -m 0700 -o root -g root /etc/vmha
fi
