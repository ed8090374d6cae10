from biasprobe_cli.main import main

main()
