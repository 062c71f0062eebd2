#!/bin/sh
echo "$GREETING from api $(cat /srv/api/VERSION)"
