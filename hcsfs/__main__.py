from hcsfs.cli import main

main()
