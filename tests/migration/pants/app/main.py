print(open("/app/greeting.txt").read().strip())
