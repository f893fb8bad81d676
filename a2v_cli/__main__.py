from a2v_cli.cli import main

main()
