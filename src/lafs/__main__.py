from lafs.cli.main import main

main()
