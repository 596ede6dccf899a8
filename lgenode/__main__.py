from lgenode.cli import main

main()
