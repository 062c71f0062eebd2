#!/bin/sh
# Prints the configuration the image was built with, then the greeting.
. /etc/layered_app/app.conf
echo "mode=${APP_MODE} port=${PORT}"
cat /opt/app/static/greeting.txt
