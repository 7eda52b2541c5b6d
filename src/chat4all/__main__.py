from chat4all.cli import main

main()
