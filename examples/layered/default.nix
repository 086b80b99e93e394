# The layered example: a program, the file it prints and a static busybox, each its own
# store path, and the buildLayeredImage arguments of an image that runs the program.
#
# `cargo xtask example layered` builds `packages` with Debian's nix-bin into a chroot store
# (target/example/store), prints `spec` with `nix-instantiate --eval --json` (the store
# paths are Nix's own), and hands that spec to `buildimage build-layered`.
#
# No nixpkgs needed: every derivation is a shell script run by the Nix sandbox's
# /bin/sh, which the xtask points at Debian's static busybox.
let
  run = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };

  busybox = run "busybox-static" ''
    mkdir -p $out/bin
    cp /bin/busybox $out/bin/busybox
    for applet in sh cat echo ls id; do ln -s busybox $out/bin/$applet; done
  '';

  greeting = run "greeting-1.0" ''
    mkdir -p $out/share
    echo "hello from a layered image" > $out/share/greeting.txt
  '';

  hello = run "hello-layered-1.0" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\n${busybox}/bin/cat ${greeting}/share/greeting.txt\n' > $out/bin/hello
    chmod 555 $out/bin/hello
  '';
in
{
  packages = { inherit busybox greeting hello; };

  # What nixpkgs would get as `dockerTools.buildLayeredImage { ... }`.
  spec = {
    name = "buildimage-example/hello-layered";
    tag = "latest";
    contents = [ hello busybox ];
    config.Cmd = [ "/bin/hello" ];
    maxLayers = 10;
  };
}
