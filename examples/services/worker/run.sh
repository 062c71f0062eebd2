#!/bin/sh
echo "$GREETING from worker $(cat /srv/worker/VERSION)"
